/**
 * When a store's outage deserves a log line: its first failure, and then a failure whose cause
 * differs from the last one logged, at most once per `quietMs`. One line per failed command would
 * flood the log (the counters carry those); one line per outage hid a cause that changed midway —
 * PostgreSQL back but the sidecar's role without a grant, after "tables not migrated" was fixed —
 * leaving an operator only a counter going up.
 */
export class OutageLog {
  readonly #now: () => number;
  readonly #quietMs: number;
  #last: { cause: string; at: number } | undefined;

  constructor(now: () => number, quietMs = 60_000) {
    this.#now = now;
    this.#quietMs = quietMs;
  }

  /** A failure with `cause`: true when it is to be logged. */
  failed(cause: string): boolean {
    const at = this.#now();
    if (this.#last !== undefined && (cause === this.#last.cause || at - this.#last.at < this.#quietMs)) return false;
    this.#last = { cause, at };
    return true;
  }

  /** The store answers: true when an outage ends, to be logged. The next failure is logged again. */
  recovered(): boolean {
    const wasDown = this.#last !== undefined;
    this.#last = undefined;
    return wasDown;
  }
}
