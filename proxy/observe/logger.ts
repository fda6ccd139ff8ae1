import { pino, type DestinationStream, type Logger } from 'pino';

/** Longest a line waits in the buffer before it reaches stdout (Envoy flushes its access log the same way). */
const FLUSH_EVERY_MS = 1000;

/**
 * Most bytes of lines held for stdout, written or not yet. A reader that stops reading (a full
 * pipe, a stuck log driver) would otherwise leave every line in memory until the process ran out
 * of it; past this, each new line is dropped whole, and counted, until stdout takes bytes again.
 */
export const STDOUT_BUFFER_MAX_BYTES = 16 * 1024 * 1024;

let stampedAt = Number.NaN;
let stamp = '';

/**
 * pino's isoTime, formatted once per millisecond instead of once per line: at thousands of
 * audit lines a second most lines share their millisecond, and Date#toISOString was a fifth of
 * what a line cost to build.
 */
function isoTime(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/**
 * The sidecar's one logger: pino JSON lines. Tests pass a destination to read audit lines;
 * production writes to stdout through an asynchronous buffer so logging stays off the hot path:
 * one write per 4 KiB under load, and at least once a second when traffic is light, so an
 * operator tailing the logs sees every line within a second.
 */
export function createLogger(options: { service: string; level?: string; destination?: DestinationStream; onDrop?: () => void }): Logger {
  const destination = options.destination ?? bufferedStdout(options.onDrop);
  return pino(
    {
      // Empty is unset, as for every other variable.
      level: options.level ?? (process.env.CA_A2A_LOG_LEVEL || 'info'),
      base: { service: options.service },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Belt and braces: whatever a call site passes, these never reach a log line.
      redact: { paths: ['token', 'authorization', 'headers.authorization', 'headers.dpop', 'client_secret', 'secret'], censor: '[redacted]' },
    },
    destination,
  );
}

/**
 * Longest the final flush of a stopping process waits for stdout. A reader that stopped reading
 * (a stuck log driver) would otherwise hold the stop until the container's stop timeout killed it.
 */
const FLUSH_AT_EXIT_MS = 2000;

/**
 * stdout through sonic-boom in buffer mode, each line handed over as a Buffer. In its default
 * string mode sonic-boom appends every line to one growing string and measures that string's
 * byte length on each write, which flattens it: a copy of up to the whole 4 KiB buffer per line,
 * a sixth of all the sidecar allocated per request. Buffers are kept in a list and copied once,
 * when written. pino.destination keeps its flush at exit. `maxLength` bounds what is held: a line
 * that would take it past the bound is not kept, and sonic-boom emits 'drop' for it (`onDrop`).
 *
 * `flush` is the stop paths' last call (sidecar, admin API, MCP gateway, agents): it calls back
 * once stdout has taken every line, or after FLUSH_AT_EXIT_MS. Then stdout is given up on: the
 * lines not yet written are lost (a stuck reader would never have read them), later lines are
 * dropped uncounted, and the write under way ends at its next EAGAIN (stdout is a non-blocking
 * pipe once Node has opened process.stdout, as bin/main.ts does). Then the stream is destroyed,
 * which also removes pino's flush at exit (it would retry forever), so nothing keeps the process
 * from exiting. Destroyed only then: sonic-boom fails on a write under way that completes after
 * its destroy. A reader back before that EAGAIN gets the held lines as usual.
 */
function bufferedStdout(onDrop?: () => void): DestinationStream & { flush(callback: () => void): void } {
  let givenUp = false;
  const stream = pino.destination({
    dest: 1,
    sync: false,
    minLength: 4096,
    maxLength: STDOUT_BUFFER_MAX_BYTES,
    periodicFlush: FLUSH_EVERY_MS,
    contentMode: 'buffer',
    retryEAGAIN: () => !givenUp,
  });
  if (onDrop !== undefined) stream.on('drop', onDrop);
  const giveUp = (): void => {
    givenUp = true;
    // The EAGAIN of the write under way, no longer retried, ends it; nothing more is written.
    stream.on('error', () => stream.destroy());
  };
  return {
    // sonic-boom's types declare string only; in buffer mode it takes (and needs) a Buffer.
    write: (line: string) => {
      if (!givenUp) stream.write(Buffer.from(line) as unknown as string);
    },
    flush: (callback: () => void) => {
      if (givenUp) return callback();
      let called = false;
      const done = (): void => {
        if (called) return;
        called = true;
        clearTimeout(bound);
        callback();
      };
      const bound = setTimeout(() => {
        giveUp();
        done();
      }, FLUSH_AT_EXIT_MS);
      stream.flush(done);
    },
  };
}

export type { Logger };
