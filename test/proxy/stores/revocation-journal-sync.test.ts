import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirSync } from '../../helpers/temp-dir.js';

const JOURNAL = fileURLToPath(new URL('../../../proxy/stores/revocation-journal.ts', import.meta.url));
const hasStrace = spawnSync('strace', ['-V']).status === 0;

/** One system call from strace's log, its arguments and result joined when it was interrupted. */
interface Call {
  readonly name: string;
  readonly args: string;
  readonly result: string;
}

/** The calls of `log` (strace -f), in the order they returned. */
function parseStrace(log: string): Call[] {
  const started = new Map<string, string>();
  const calls: Call[] = [];
  for (const line of log.split('\n')) {
    const [, tid, rest] = /^(\d+)\s+(.*)$/.exec(line) ?? [];
    if (tid === undefined || rest === undefined) continue;
    const unfinished = /^(.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished?.[1] !== undefined) {
      started.set(tid, unfinished[1]);
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    const whole = resumed?.[1] !== undefined ? `${started.get(tid) ?? ''}${resumed[1]}` : rest;
    const call = /^(\w+)\((.*)\)\s+= (.*)$/.exec(whole);
    if (call?.[1] !== undefined && call[2] !== undefined && call[3] !== undefined) calls.push({ name: call[1], args: call[2], result: call[3] });
  }
  return calls;
}

/** Whether `dir` was fsynced between the calls at `from` and `to` (each fd names what it was last opened on). */
function dirSyncedBetween(calls: readonly Call[], dir: string, from: number, to: number): boolean {
  const opened = new Map<string, string>();
  return calls.slice(0, to).some((call, index) => {
    if (call.name === 'openat') opened.set(call.result.split(' ')[0] ?? '', call.args);
    return index > from && call.name === 'fsync' && opened.get(call.args)?.startsWith(`AT_FDCWD, "${dir}", O_RDONLY`) === true;
  });
}

describe('revocation journal: what survives a power loss', () => {
  const dir = tempDirSync('journal-sync');

  it('syncs the directories it creates, the journal\'s directory after creating the file and after compaction\'s rename, each before it answers', async () => {
    assert.ok(hasStrace, 'strace is needed to see the system calls: apt-get install strace (.ci/run installs it)');
    const dataDir = join(dir, 'new', 'sub');
    const file = join(dataDir, 'revocations.jsonl');
    const log = join(dir, 'strace.log');
    const script = [
      `import { JournalRevocationStore } from ${JSON.stringify(JOURNAL)};`,
      `const store = new JournalRevocationStore(${JSON.stringify(file)});`,
      "await store.add({ revocation: { kind: 'jti', jti: 'a', expiresAt: 5 }, revokedAt: 1, revokedBy: 'ops' });",
      "process.stdout.write('added\\n');",
      'await store.deleteExpired(10);',
      "process.stdout.write('compacted\\n');",
    ].join('\n');
    const child = spawn('strace', ['-f', '-qq', '--seccomp-bpf', '-o', log, '-e', 'trace=openat,mkdir,rename,fsync,write',
      process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    assert.deepEqual(await once(child, 'exit'), [0, null]);
    const calls = parseStrace(await readFile(log, 'utf8'));
    const at = (name: string, args: string): number => {
      const index = calls.findIndex((c) => c.name === name && c.args.startsWith(args) && !c.result.startsWith('-1'));
      assert.notEqual(index, -1, `${name}(${args}…) not found`);
      return index;
    };
    const added = at('write', '1, "added\\n"');
    const created = at('openat', `AT_FDCWD, "${file}", O_WRONLY|O_CREAT|O_APPEND`);
    assert.ok(dirSyncedBetween(calls, dataDir, created, added), 'the new journal\'s name was synced before add answered');
    for (const made of [dataDir, join(dir, 'new')]) {
      assert.ok(dirSyncedBetween(calls, dirname(made), at('mkdir', `"${made}"`), added), `${dirname(made)} synced after ${made} was made in it`);
    }
    const renamed = at('rename', `"${file}.next", "${file}"`);
    assert.ok(dirSyncedBetween(calls, dataDir, renamed, at('write', '1, "compacted\\n"')), 'the compaction\'s rename was synced before deleteExpired answered');
  });
});
