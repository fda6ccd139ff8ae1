import { Redis, type RedisOptions } from 'ioredis';

/** Options of {@link openRedis}. */
export interface OpenRedisOptions {
  /** Per-command timeout; a hung Redis must not hold a request longer than this. */
  readonly commandTimeoutMs?: number;
  /** Connection name shown by CLIENT LIST. */
  readonly name?: string;
  /**
   * Connection errors (refused, reset, a {@link RedisSilentError}); ioredis keeps reconnecting in
   * the background.
   */
  readonly onError?: (error: Error) => void;
}

/** A connection that did not answer PING in time, being replaced. Match on `.code`. */
export class RedisSilentError extends Error {
  readonly code = 'REDIS_SILENT';
}

/** How often a ready connection is PINGed, and how many PINGs in a row may go unanswered. */
const PING_INTERVAL_MS = 2_000;
const PING_MISSES = 2;

/**
 * A connection can go silent without closing (a NAT or load balancer that forgot it, a failover
 * that left it to a peer gone): ioredis still reports it ready, every command on it times out, and
 * only the kernel gives up on it, after about 15 minutes of retransmissions. So a ready connection
 * is PINGed every {@link PING_INTERVAL_MS}, one at a time; `misses` in a row unanswered within the
 * client's command timeout are reported (`onSilent`) and the socket destroyed (not ended: a FIN
 * to a peer that is gone would wait for an answer that never comes), and ioredis reconnects. A
 * failure is acted on only if that same connection is still in use. Stops when the client ends.
 */
export function replaceWhenSilent(client: Redis, misses: number, onSilent: (detail: string) => void): void {
  let pinging = false;
  let missed = 0;
  const timer = setInterval(() => {
    const stream = client.stream;
    if (pinging || client.status !== 'ready') return;
    pinging = true;
    client.ping().then(() => {
      pinging = false;
      missed = 0;
    }, (error: Error) => {
      pinging = false;
      if (client.status !== 'ready' || client.stream !== stream || ++missed < misses) return;
      missed = 0;
      onSilent(`${misses === 1 ? 'a PING' : `${misses} PINGs in a row`} unanswered (${error.message}); reconnecting`);
      stream.destroy();
    });
  }, PING_INTERVAL_MS);
  timer.unref();
  client.once('end', () => clearInterval(timer));
}

/**
 * One ioredis client configured to fail fast: no offline queue (a command issued while Redis is
 * unreachable rejects at once instead of waiting for a reconnect), no per-request retries, short
 * command and connect timeouts, and reconnection with a capped backoff forever. Callers choose
 * what a failure means (insurance limiter, fail closed, skip) — the client never hides one.
 */
export function openRedis(url: string, options: OpenRedisOptions = {}): Redis {
  const redisOptions: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 250,
    connectTimeout: 1_000,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1_000),
    connectionName: options.name,
    lazyConnect: false,
  };
  const client = new Redis(url, redisOptions);
  // Without a listener ioredis prints every reconnect failure; the owner decides what to log.
  client.on('error', (error: Error) => options.onError?.(error));
  replaceWhenSilent(client, PING_MISSES, (detail) => options.onError?.(new RedisSilentError(`the Redis connection went silent: ${detail}`)));
  return client;
}

/** Resolves once the client is ready, or rejects after `timeoutMs` (startup checks). */
export function redisReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(Object.assign(new Error(`Redis not reachable within ${timeoutMs} ms`), { code: 'STORE_UNAVAILABLE' }));
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** Closes a client without waiting for a Redis that may be gone. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  try {
    if (client.status === 'ready') await client.quit();
    else client.disconnect();
  } catch {
    client.disconnect();
  }
}

/** Deletes every key under `prefix:` (SCAN, not KEYS: never blocks Redis). For benches and tests. */
export async function dropKeysWithPrefix(redisUrl: string, prefix: string): Promise<void> {
  const client = openRedis(redisUrl, { commandTimeoutMs: 2_000 });
  try {
    await redisReady(client, 2_000);
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await closeRedis(client);
  }
}
