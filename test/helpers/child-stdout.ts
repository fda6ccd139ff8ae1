import type { ChildProcessWithoutNullStreams, ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** How much of the child's stderr a failure quotes: its last lines say why it stopped. */
const STDERR_TAIL = 2000;

/** What a child process wrote to stdout so far, and its first log line of an event. */
export interface ChildStdout {
  /** Everything read so far. */
  text(): string;
  /**
   * Resolves the first JSON line whose event_type is `event` once it is read; rejects if the child
   * exits first, with its exit code or signal and the tail of its stderr (when piped), so a test
   * says why the child stopped.
   */
  line<T = Record<string, unknown>>(event: string): Promise<T>;
  /**
   * Calls `send` every half second until `marker` has been read (true) or 30 s passed (false). For
   * a reader just back: a line logged while the lines held for it are still on their way out is
   * dropped too, so one request alone may never show.
   */
  sendUntilRead(marker: string, send: () => Promise<unknown>): Promise<boolean>;
}

/**
 * Reads a child's stdout as text from now on (pause and resume `child.stdout` to play a stuck
 * reader), and keeps the tail of its stderr when that is piped.
 */
export function readChildStdout(child: ChildProcessWithoutNullStreams | ChildProcess): ChildStdout {
  let out = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    out += chunk;
  });
  // Read for the child's whole life: a pipe nobody reads would stop it once full. Decoded here, not
  // with setEncoding, so that another reader of the stream still gets what it asked for.
  const decoder = new StringDecoder('utf8');
  child.stderr?.on('data', (chunk: Buffer | string) => {
    stderr = (stderr + (typeof chunk === 'string' ? chunk : decoder.write(chunk))).slice(-STDERR_TAIL);
  });
  // All it wrote has been read (or never will be: a stream the test paused).
  const drained = (stream: Readable | null | undefined) => !stream || stream.readableEnded || stream.destroyed || stream.isPaused();
  const exited = () => (child.exitCode !== null || child.signalCode !== null) && drained(child.stdout) && drained(child.stderr);
  return {
    text: () => out,
    async line<T>(event: string): Promise<T> {
      const marker = `"event_type":"${event}"`;
      while (!out.includes(marker)) {
        if (exited()) {
          const how = child.exitCode === null ? `on ${child.signalCode}` : `with code ${child.exitCode}`;
          const why = child.stderr ? stderr.trimEnd() || '(nothing on stderr)' : '(its stderr is not piped to the test)';
          throw new Error(`the process exited ${how} before logging ${event}: ${why}`);
        }
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
