import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Processes moved to another core for a run, and how to put them back. */
export interface Moved {
  /** `name (N processes)` for each name found and moved. */
  readonly names: readonly string[];
  /** Gives every process of a moved name the CPU list it had before, also those started since. */
  restore(): Promise<void>;
}

/**
 * Moves every running process called one of `names` (every thread of each: `taskset -a`) to
 * `core`, for a benchmark whose proxy is pinned to another core. The machine's Redis and
 * PostgreSQL stand in for servers of their own in production; left free to run on the proxy's
 * core, they take it from the proxy each time it writes them a command, and a shared-store
 * sidecar's throughput then measures that sharing too. Processes they fork later (PostgreSQL's
 * backends) inherit the new list. Nothing is moved where taskset fails or no process is found.
 */
export async function moveToCore(names: readonly string[], core: number): Promise<Moved> {
  const before = new Map<string, string>();
  const moved: string[] = [];
  for (const name of names) {
    let count = 0;
    for (const pid of await pidsOf(name)) {
      const cpus = /list: (\S+)/.exec((await exec('taskset', ['-c', '-p', pid]).catch(() => ({ stdout: '' }))).stdout)?.[1];
      if (cpus === undefined) continue;
      if (!(await exec('taskset', ['-a', '-c', '-p', String(core), pid]).then(() => true, () => false))) continue;
      if (!before.has(name)) before.set(name, cpus);
      count++;
    }
    if (count > 0) moved.push(`${name} (${count})`);
  }
  return {
    names: moved,
    // Every process of the name now, backends forked during the run included, gets the list the
    // first one had: a server's processes share one list.
    async restore() {
      for (const [name, cpus] of before) {
        for (const pid of await pidsOf(name)) await exec('taskset', ['-a', '-c', '-p', cpus, pid]).catch(() => undefined);
      }
    },
  };
}

async function pidsOf(name: string): Promise<string[]> {
  return (await exec('pgrep', ['-x', name]).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
}
