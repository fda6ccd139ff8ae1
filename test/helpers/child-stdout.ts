import type { ChildProcessWithoutNullStreams, ChildProcess } from 'node:child_process';

/** What a child process wrote to stdout so far, and its first log line of an event. */
export interface ChildStdout {
  /** Everything read so far. */
  text(): string;
  /** Resolves the first JSON line whose event_type is `event` once it is read (or throws if the child exits first). */
  line<T = Record<string, unknown>>(event: string): Promise<T>;
  /**
   * Calls `send` every half second until `marker` has been read (true) or 30 s passed (false). For
   * a reader just back: a line logged while the lines held for it are still on their way out is
   * dropped too, so one request alone may never show.
   */
  sendUntilRead(marker: string, send: () => Promise<unknown>): Promise<boolean>;
}

/** Reads a child's stdout as text from now on (pause and resume `child.stdout` to play a stuck reader). */
export function readChildStdout(child: ChildProcessWithoutNullStreams | ChildProcess): ChildStdout {
  let out = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    out += chunk;
  });
  return {
    text: () => out,
    async line<T>(event: string): Promise<T> {
      const marker = `"event_type":"${event}"`;
      while (!out.includes(marker)) {
        if (child.exitCode !== null) throw new Error(`the process exited (${child.exitCode}) before logging ${event}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return JSON.parse(out.split('\n').find((l) => l.includes(marker)) as string) as T;
    },
    async sendUntilRead(marker: string, send: () => Promise<unknown>): Promise<boolean> {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && child.exitCode === null) {
        await send();
        const next = Date.now() + 500;
        while (!out.includes(marker) && Date.now() < next) await new Promise((resolve) => setTimeout(resolve, 50));
        if (out.includes(marker)) return true;
      }
      return out.includes(marker);
    },
  };
}
