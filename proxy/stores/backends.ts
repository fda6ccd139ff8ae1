import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { closeRedis, openRedis } from './redis.js';
import { LocalRevocationBus, RedisRevocationBus, type RevocationBus, type RevocationListener } from './revocation-bus.js';
import { JournalRevocationStore } from './revocation-journal.js';
import { MemoryRevocationStore, SqlRevocationStore, type AddResult, type RevocationRecord, type RevocationStore } from './revocation-store.js';
import type { Revocation } from './revocation-set.js';
import { openSqlClient } from './sql/sql-client.js';

/**
 * Where shared state lives. `redisUrl` / `databaseUrl` select the real backends (REDIS_URL,
 * DATABASE_URL); without `databaseUrl`, `dataDir` selects the embedded journal file for the
 * durable side; with neither, revocations live in memory (tests, throwaway runs).
 */
export interface StoreOptions {
  readonly redisUrl?: string | undefined;
  readonly databaseUrl?: string | undefined;
  readonly dataDir?: string | undefined;
  /** Prefix of every Redis key and channel (default `ca-a2a`); tests isolate runs with it. */
  readonly keyPrefix?: string | undefined;
}

/** Backend errors the owner should log and count: which store, and what happened. */
export type BackendErrorHandler = (store: 'redis' | 'postgres', error: Error) => void;

/** The durable store and the push channel of revocation, plus the Redis client when there is one. */
export interface RevocationBackend {
  readonly store: RevocationStore;
  readonly bus: RevocationBus;
  /**
   * The Redis part of `bus` alone, when there is Redis: its resyncs mean the subscriber connection
   * is subscribed (again), which `bus`'s do not (with a journal they also follow its changes).
   */
  readonly redisBus: RedisRevocationBus | undefined;
  readonly redis: Redis | undefined;
  readonly keyPrefix: string;
  /** For logs and /ready: which backend each part uses. */
  readonly describe: { readonly durable: 'postgres' | 'journal' | 'memory'; readonly shared: 'redis' | 'process' };
  close(): Promise<void>;
}

// Without Redis, every sidecar of one process (ca-a2a up) shares the push channel of its durable
// store (a data directory, a database URL), so a revocation made through one is applied by all at
// once. The channel of a data directory also watches the journal, so one made by another process
// on the same directory is reloaded as soon as it is written.
const processBuses = new Map<string, { bus: LocalRevocationBus; refs: number }>();

function acquireProcessBus(key: string, watchFile?: string): LocalRevocationBus {
  const entry = processBuses.get(key) ?? { bus: new LocalRevocationBus(watchFile === undefined ? {} : { watchFile }), refs: 0 };
  processBuses.set(key, entry);
  entry.refs++;
  return entry.bus;
}

async function releaseProcessBus(key: string): Promise<void> {
  const entry = processBuses.get(key);
  if (!entry || --entry.refs > 0) return;
  processBuses.delete(key);
  await entry.bus.close();
}

/** Opens the revocation backend the options select. Nothing here waits for Redis or PostgreSQL to answer. */
export async function openRevocationBackend(options: StoreOptions, onError: BackendErrorHandler, pool: { max?: number; connectionTimeoutMs?: number } = {}): Promise<RevocationBackend> {
  const keyPrefix = options.keyPrefix ?? 'ca-a2a';
  const redis = options.redisUrl ? openRedis(options.redisUrl, { name: 'ca-a2a', onError: (error) => onError('redis', error) }) : undefined;
  let store: RevocationStore;
  let durable: RevocationBackend['describe']['durable'];
  let localBus: LocalRevocationBus | undefined;
  let release = async (): Promise<void> => {};
  try {
    if (options.databaseUrl) {
      const sql = await openSqlClient({
        databaseUrl: options.databaseUrl,
        pool: { min: 0, max: pool.max ?? 2, connectionTimeoutMs: pool.connectionTimeoutMs ?? 2_000, statementTimeoutMs: 5_000, applicationName: 'ca-a2a-sidecar' },
        onIdleError: (error) => onError('postgres', error),
      });
      store = new SqlRevocationStore(sql, { ownsClient: true });
      durable = 'postgres';
      if (!redis) {
        const key = `postgres ${options.databaseUrl}`;
        localBus = acquireProcessBus(key);
        release = () => releaseProcessBus(key);
      }
    } else if (options.dataDir) {
      const dir = resolve(options.dataDir);
      const journal = join(dir, 'revocations.jsonl');
      store = new JournalRevocationStore(journal);
      localBus = acquireProcessBus(`journal ${dir}`, journal);
      release = () => releaseProcessBus(`journal ${dir}`);
      durable = 'journal';
    } else {
      store = new MemoryRevocationStore();
      durable = 'memory';
    }
  } catch (error) {
    if (redis) await closeRedis(redis);
    throw error;
  }
  const redisBus = redis ? new RedisRevocationBus(redis, keyPrefix, (error) => onError('redis', error)) : undefined;
  // With Redis and a journal, a revocation in the journal whose push failed (Redis refusing
  // writes, a `ca-a2a revoke` whose user may not write) still reaches this host's sidecars at once.
  const bus = redisBus && localBus ? new RedisAndProcessBus(redisBus, localBus) : redisBus ?? localBus ?? new LocalRevocationBus();
  // Without PostgreSQL each host keeps its own journal: a sidecar also loads what Redis holds of
  // the others' revocations, or one started after a revocation on another host would accept its token.
  if (redisBus && !options.databaseUrl) store = new WithPushedRevocations(store, redisBus);
  let closed: Promise<void> | undefined;
  return {
    store, bus, redisBus, redis, keyPrefix,
    describe: { durable, shared: redis ? 'redis' : 'process' },
    // Once only: a second release would take the shared process bus from another backend.
    close() {
      closed ??= (async () => {
        if (bus !== localBus) await bus.close();
        await store.close();
        await release();
        if (redis) await closeRedis(redis);
      })();
      return closed;
    },
  };
}

/**
 * Redis push plus the process bus of a data directory (shared, released by the backend): a
 * subscriber hears Redis pushes, this process's publishes and the journal watch's resyncs. A
 * publish reaches this process's subscribers first, then Redis; it throws when the Redis push
 * fails, as callers report that. This process's subscribers may hear a revocation twice (applying
 * one is idempotent).
 */
class RedisAndProcessBus implements RevocationBus {
  readonly #redis: RedisRevocationBus;
  readonly #process: LocalRevocationBus;
  /** Listeners of this backend on the shared process bus, removed at close. */
  readonly #offProcess = new Set<() => void>();

  constructor(redis: RedisRevocationBus, processBus: LocalRevocationBus) {
    this.#redis = redis;
    this.#process = processBus;
  }

  async publish(revocation: Revocation, nowSeconds: number): Promise<void> {
    await this.#process.publish(revocation);
    await this.#redis.publish(revocation, nowSeconds);
  }

  subscribe(listener: RevocationListener): () => void {
    const offProcess = this.#process.subscribe(listener);
    this.#offProcess.add(offProcess);
    const offRedis = this.#redis.subscribe(listener);
    return () => {
      offRedis();
      offProcess();
      this.#offProcess.delete(offProcess);
    };
  }

  async close(): Promise<void> {
    for (const off of this.#offProcess) off();
    this.#offProcess.clear();
    await this.#redis.close();
  }
}

/**
 * A host's own store (journal or memory), whose loads also hold every revocation pushed through
 * Redis by any host. Loading fails when Redis cannot answer: the sidecar is then not ready (or,
 * once loaded, keeps its last known set), as with PostgreSQL down.
 */
class WithPushedRevocations implements RevocationStore {
  readonly #own: RevocationStore;
  readonly #bus: RedisRevocationBus;

  constructor(own: RevocationStore, bus: RedisRevocationBus) {
    this.#own = own;
    this.#bus = bus;
  }

  /**
   * Into the host's own store. A jti another host revoked until later (its Redis cache entry) is
   * kept until then by every sidecar, so that is the expiry reported and pushed, with the host's
   * own record (Redis holds no who or why). Redis not answering leaves the host's own answer (the
   * push then fails too, and says so).
   */
  async add(record: RevocationRecord): Promise<AddResult> {
    const own = await this.#own.add(record);
    const r = own.record.revocation;
    if (r.kind !== 'jti') return own;
    const pushed = await this.#bus.pushedJti(r.jti).catch(() => undefined);
    if (pushed === undefined || pushed.expiresAt <= r.expiresAt) return own;
    return { created: false, record: { ...own.record, revocation: { ...r, expiresAt: pushed.expiresAt } } };
  }

  async active(nowSeconds: number): Promise<Revocation[]> {
    const [own, pushed] = await Promise.all([this.#own.active(nowSeconds), this.#bus.live(nowSeconds)]);
    return [...own, ...pushed];
  }

  list(nowSeconds: number, limit: number): Promise<RevocationRecord[]> {
    return this.#own.list(nowSeconds, limit);
  }

  deleteExpired(nowSeconds: number): Promise<number> {
    return this.#own.deleteExpired(nowSeconds);
  }

  close(): Promise<void> {
    return this.#own.close();
  }
}

/** The data directory of the embedded mode: CA_A2A_DATA_DIR, default ./.ca-a2a (also when set empty). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CA_A2A_DATA_DIR || join('.', '.ca-a2a');
}

/** Store options from the environment (REDIS_URL, DATABASE_URL, CA_A2A_DATA_DIR). */
export function storeOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreOptions {
  return {
    redisUrl: env.REDIS_URL || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    dataDir: defaultDataDir(env),
    keyPrefix: env.CA_A2A_KEY_PREFIX || undefined,
  };
}
