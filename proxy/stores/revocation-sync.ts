import type { RevocationBus } from './revocation-bus.js';
import type { Revocation, RevocationSet } from './revocation-set.js';
import type { RevocationStore } from './revocation-store.js';

export interface RevocationSyncOptions {
  readonly set: RevocationSet;
  readonly store: RevocationStore;
  readonly bus: RevocationBus;
  readonly now?: () => number;
  /** Safety resync from the durable store, for pushes lost without a reconnect (default 30 s). */
  readonly resyncIntervalMs?: number;
  /** Retry delay while the first load fails (default 1 s). */
  readonly retryMs?: number;
  /** Deletion of expired rows (default 10 min; 0 disables). */
  readonly cleanupIntervalMs?: number;
  readonly onApplied?: (revocation: Revocation, source: 'load' | 'push') => void;
  /** After every load that succeeded; `first` for the one that made the set loaded. */
  readonly onLoaded?: (count: number, first: boolean) => void;
  readonly onError?: (error: unknown, during: 'load' | 'cleanup') => void;
}

/**
 * Keeps one sidecar's in-process RevocationSet equal to the durable store: a full load before
 * the sidecar is ready, pushes as they come, a reload after every bus reconnect, and a periodic
 * resync. Failure policy: until the first load succeeds the set says it is not loaded (the
 * revocation layer refuses and /ready is 503); afterwards a failing store leaves the set as it
 * was — the last known revocations keep being enforced. A load adds and prunes what expired, and
 * never removes anything else: a jti the set holds alone (the stolen-token alarm's local
 * revocation, when the durable one failed) stays until its expiry.
 */
export class RevocationSync {
  readonly #o: RevocationSyncOptions;
  readonly #now: () => number;
  readonly #timers: NodeJS.Timeout[] = [];
  #unsubscribe: (() => void) | undefined;
  #retry: NodeJS.Timeout | undefined;
  /** The last load started or queued; loads run one after another. */
  #loading: Promise<void> = Promise.resolve();
  /** A load queued behind the running one and not started yet. */
  #queued: Promise<void> | undefined;
  #closed = false;

  constructor(options: RevocationSyncOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Subscribes, then loads (retrying until it succeeds). Resolves after the first attempt. */
  async start(): Promise<void> {
    // Subscribe first: a revocation made during the load is then heard, not lost.
    this.#unsubscribe = this.#o.bus.subscribe({
      onRevocation: (revocation) => this.#apply(revocation, 'push'),
      onResync: () => void this.reload(),
    });
    const resync = setInterval(() => void this.reload(), this.#o.resyncIntervalMs ?? 30_000);
    resync.unref();
    this.#timers.push(resync);
    const cleanupMs = this.#o.cleanupIntervalMs ?? 600_000;
    if (cleanupMs > 0) {
      const cleanup = setInterval(() => void this.#cleanup(), cleanupMs);
      cleanup.unref();
      this.#timers.push(cleanup);
    }
    await this.reload();
  }

  get loaded(): boolean {
    return this.#o.set.loaded;
  }

  /**
   * Loads every active revocation from the durable store into the set, one load at a time. A call
   * during a load queues one more load after it, and calls until that one starts share it.
   */
  reload(): Promise<void> {
    // Not the running load: it may have read the store before the event behind this call (a
    // subscriber ready, a journal change), and the next resync would come too late.
    if (this.#queued) return this.#queued;
    const load = async (): Promise<void> => {
      this.#queued = undefined;
      await this.#load();
    };
    this.#loading = this.#loading.then(load, load);
    this.#queued = this.#loading;
    return this.#queued;
  }

  async #load(): Promise<void> {
    if (this.#closed) return;
    const nowSeconds = this.#now() / 1000;
    try {
      const active = await this.#o.store.active(nowSeconds);
      for (const revocation of active) this.#apply(revocation, 'load');
      this.#o.set.prune(nowSeconds);
      const first = !this.#o.set.loaded;
      this.#o.set.markLoaded();
      this.#o.onLoaded?.(active.length, first);
    } catch (error) {
      this.#o.onError?.(error, 'load');
      if (!this.#o.set.loaded && !this.#closed && !this.#retry) {
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          void this.reload();
        }, this.#o.retryMs ?? 1_000);
      }
    }
  }

  #apply(revocation: Revocation, source: 'load' | 'push'): void {
    if (this.#o.set.add(revocation)) this.#o.onApplied?.(revocation, source);
  }

  async #cleanup(): Promise<void> {
    try {
      await this.#o.store.deleteExpired(this.#now() / 1000);
    } catch (error) {
      this.#o.onError?.(error, 'cleanup');
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#retry) clearTimeout(this.#retry);
    await this.#loading;
  }
}
