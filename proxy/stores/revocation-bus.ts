import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Redis } from 'ioredis';
import { redisReady, replaceWhenSilent } from './redis.js';
import { toRevocation, type Revocation } from './revocation-set.js';

/** What a subscriber hears: a new revocation, or "you may have missed some: reload". */
export interface RevocationListener {
  onRevocation(revocation: Revocation): void;
  onResync(): void;
}

/**
 * Pushes durable revocations to every running sidecar. Failure policy: `publish` throws when the
 * push could not be sent; the revocation is durable already, so callers log it and peers catch
 * up from the durable store on their next resync. `nowSeconds`: the caller's clock (epoch
 * seconds), which any expiry the bus computes follows.
 */
export interface RevocationBus {
  publish(revocation: Revocation, nowSeconds: number): Promise<void>;
  subscribe(listener: RevocationListener): () => void;
  close(): Promise<void>;
}

/**
 * Push for the embedded mode. Within one process (sidecars, admin API and CLI of `ca-a2a up`)
 * a revocation is handed to every subscriber at once. With `watchFile` (the revocation journal),
 * a change of that file made by any other process — `ca-a2a revoke`, another sidecar — makes
 * every subscriber reload from it: inotify on the file's directory, so compaction by rename is
 * seen too. Where the file system cannot be watched, the periodic resync still catches up.
 */
export class LocalRevocationBus implements RevocationBus {
  readonly #emitter = new EventEmitter();
  #watcher: FSWatcher | undefined;
  #pending: NodeJS.Timeout | undefined;

  constructor(options: { watchFile?: string } = {}) {
    this.#emitter.setMaxListeners(0);
    if (options.watchFile) this.#watch(options.watchFile);
  }

  #watch(file: string): void {
    const name = basename(file);
    try {
      this.#watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === name) this.#resyncSoon();
      });
      this.#watcher.on('error', () => this.#watcher?.close());
    } catch {
      this.#watcher = undefined;
    }
  }

  // One reload for a burst of events (an append fires several).
  #resyncSoon(): void {
    if (this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      this.#emitter.emit('resync');
    }, 10);
  }

  async publish(revocation: Revocation): Promise<void> {
    this.#emitter.emit('revocation', revocation);
  }

  subscribe(listener: RevocationListener): () => void {
    const onRevocation = (revocation: Revocation): void => listener.onRevocation(revocation);
    const onResync = (): void => listener.onResync();
    this.#emitter.on('revocation', onRevocation);
    this.#emitter.on('resync', onResync);
    return () => {
      this.#emitter.off('revocation', onRevocation);
      this.#emitter.off('resync', onResync);
    };
  }

  async close(): Promise<void> {
    this.#watcher?.close();
    if (this.#pending) clearTimeout(this.#pending);
    this.#emitter.removeAllListeners();
  }
}

/**
 * Redis pub/sub on one channel per key prefix, plus a cache entry per revocation
 * (`PREFIX:revoked:KIND:ID`, expiring with it) for tools that look one up without PostgreSQL, and
 * the set of live revocations (`PREFIX:revocations:live`, scored by expiry) that sidecars without
 * PostgreSQL load, since each of them keeps only its own host's journal.
 * Pub/sub delivers at most once: every (re)subscription triggers `onResync`, so a sidecar that
 * lost its connection reloads from the durable store instead of trusting it heard everything.
 * A connection can also go silent without closing (a NAT or load balancer that forgot it, a
 * failover): it still looks ready and hears nothing. The subscriber is therefore PINGed
 * ({@link replaceWhenSilent}); one unanswered within {@link SUBSCRIBER_PING_TIMEOUT_MS} is reported
 * (`onError`, a {@link SubscriberSilentError}) and the connection dropped, and the reconnect that
 * follows re-subscribes and resyncs as above.
 */
export const SUBSCRIBER_PING_TIMEOUT_MS = 1_000;

/** The subscriber connection did not answer a PING in time and is being replaced. Match on `.code`. */
export class SubscriberSilentError extends Error {
  readonly code = 'SUBSCRIBER_SILENT';
}

export class RedisRevocationBus implements RevocationBus {
  readonly #client: Redis;
  /**
   * Opened by the first subscribe(): the admin API and `ca-a2a revoke` only publish, and a
   * connection they never read would need SUBSCRIBE in their Redis user's rights (redis-acl.ts).
   */
  #subscriber: Redis | undefined;
  readonly #onError: (error: Error) => void;
  readonly #channel: string;
  readonly #prefix: string;
  readonly #live: string;
  readonly #listeners = new Set<RevocationListener>();

  constructor(client: Redis, prefix: string, onError: (error: Error) => void) {
    this.#client = client;
    this.#prefix = prefix;
    this.#onError = onError;
    this.#channel = `${prefix}:revocations`;
    this.#live = `${prefix}:revocations:live`;
  }

  #openSubscriber(): Redis {
    const onError = this.#onError;
    // A subscriber connection is dedicated to SUBSCRIBE; its offline queue lets SUBSCRIBE wait
    // for the first connection, and ioredis re-subscribes by itself after a reconnect.
    // Its commands (SUBSCRIBE, PING) may take up to the PING timeout, not the fail-fast one of the
    // request path: a Redis slow for a moment must not cost every sidecar a reconnect and a reload.
    const subscriber = this.#client.duplicate({ enableOfflineQueue: true, connectionName: 'ca-a2a-revocations', commandTimeout: SUBSCRIBER_PING_TIMEOUT_MS });
    subscriber.on('error', onError);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      const revocation = parseRevocation(message);
      if (revocation) for (const listener of this.#listeners) listener.onRevocation(revocation);
    });
    // A resync reads the durable store, so it must start only once the subscription is live: on
    // 'ready' the SUBSCRIBE (ours, or ioredis's own after a reconnect) is not even sent yet, and a
    // revocation published between that read and the subscription was heard by nobody until the
    // next periodic resync. SUBSCRIBE again and resync on its answer (a repeated SUBSCRIBE is
    // harmless; answers come in order, so ioredis's own has been answered too).
    subscriber.on('ready', () => {
      subscriber.subscribe(this.#channel).then(() => {
        for (const listener of this.#listeners) listener.onResync();
      }, onError);
    });
    // PING is allowed in subscribe mode; one unanswered is enough here, its timeout being longer.
    replaceWhenSilent(subscriber, 1, (detail) => onError(new SubscriberSilentError(`the revocation subscriber connection went silent: ${detail}`)));
    return subscriber;
  }

  async publish(revocation: Revocation, nowSeconds: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(revocation.expiresAt - nowSeconds));
    const id = revocation.kind === 'jti' ? revocation.jti : revocation.kind === 'subject' ? revocation.subject : 'all';
    const message = JSON.stringify(revocation);
    const results = await this.#client.multi()
      .set(`${this.#prefix}:revoked:${revocation.kind}:${id}`, message, 'EX', ttl)
      .zadd(this.#live, revocation.expiresAt, message)
      .zremrangebyscore(this.#live, '-inf', nowSeconds)
      .publish(this.#channel, message)
      .exec();
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed) throw failed?.[0] ?? new Error('Redis transaction aborted');
  }

  /**
   * Every revocation pushed through this Redis and still in force at `nowSeconds`. Throws when
   * Redis cannot answer (after waiting up to a second for a connection still being made).
   */
  async live(nowSeconds: number): Promise<Revocation[]> {
    if (this.#client.status !== 'ready') await redisReady(this.#client, 1_000);
    const members = await this.#client.zrangebyscore(this.#live, `(${nowSeconds}`, '+inf');
    return members.map(parseRevocation).filter((revocation) => revocation !== undefined);
  }

  /**
   * The revocation of `jti` last pushed through this Redis and not expired (its cache entry), or
   * undefined. Throws when Redis cannot answer.
   */
  async pushedJti(jti: string): Promise<Revocation | undefined> {
    if (this.#client.status !== 'ready') await redisReady(this.#client, 1_000);
    const message = await this.#client.get(`${this.#prefix}:revoked:jti:${jti}`);
    return message === null ? undefined : parseRevocation(message);
  }

  subscribe(listener: RevocationListener): () => void {
    this.#listeners.add(listener);
    this.#subscriber ??= this.#openSubscriber();
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    this.#subscriber?.disconnect();
  }
}

/** Reads a pushed message; anything malformed is dropped (the next resync repairs it). */
export function parseRevocation(message: string): Revocation | undefined {
  try {
    return toRevocation(JSON.parse(message));
  } catch {
    return undefined;
  }
}
