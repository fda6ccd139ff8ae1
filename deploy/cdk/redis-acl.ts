/**
 * The Redis users of a deployment and what each may do: Redis ACL rules, the very tokens of an
 * ElastiCache RBAC access string (`ACL SETUSER name >password <rules…>` locally). Derived from
 * proxy/stores; test/deploy/redis-acl.test.ts runs the real stores on users with exactly these
 * rules, and a deployment's Redis holds nothing else of ours.
 *
 * - `sidecar`: its own counters and claims, `PREFIX:rl:*` (rate-limiter-flexible's Lua script:
 *   SET NX EX, INCRBY, PTTL, EXPIRE; EVALSHA, EVAL when the script is not loaded yet; the previous
 *   window's counter: MULTI GET PTTL EXEC), `PREFIX:once:*`
 *   (replay: SET NX EX), `PREFIX:sources:*` (stolen-token alarm: MULTI SADD EXPIRE SCARD EXEC), and
 *   SUBSCRIBE to the revocations channel. It may not PUBLISH there (no forged pushes) nor touch the
 *   revocation cache.
 * - `admin`: the admin API and `ca-a2a revoke`, pushing a revocation: MULTI, SET
 *   `PREFIX:revoked:*`, ZADD and ZREMRANGEBYSCORE `PREFIX:revocations:live`, PUBLISH, EXEC. It
 *   may not SUBSCRIBE (they never listen, so their revocation bus opens no subscriber), nor read
 *   or reset rate limits, replay ids or token sources.
 *
 * Both: PING (the liveness probe of every connection), INFO (ioredis's ready check), CLIENT
 * SETNAME (connection names in CLIENT LIST), QUIT (a clean close). Lua runs with its caller's
 * rights: EVAL grants nothing past these commands and keys.
 *
 * `redis-only` (REDIS_URL without DATABASE_URL: each host keeps its own journal, proxy/stores/
 * backends.ts) adds what that mode reads back from Redis. A sidecar loads every host's pushes with
 * ZRANGEBYSCORE `PREFIX:revocations:live` (at start, on each resubscription, at each resync): a
 * read-only key pattern (`%R~`, Redis 7) and that one command, since with `~` its SET, EXPIRE or
 * INCRBY could overwrite or expire the set every sidecar loads. The admin API, before it pushes a
 * jti, GETs `PREFIX:revoked:jti:ID` for a later expiry another host pushed, so as not to shorten it.
 */
export type RedisUser = 'sidecar' | 'admin';

/** Where revocations are durable: PostgreSQL (DATABASE_URL; the AWS stack, compose), or each host's journal (Redis without DATABASE_URL). */
export type RedisAclMode = 'postgres' | 'redis-only';

const CONNECTION = ['+ping', '+info', '+client|setname', '+quit'] as const;

/**
 * The ACL rules of `user` for key prefix `prefix` (CA_A2A_KEY_PREFIX, default `ca-a2a`) in `mode`
 * (default `postgres`), `on` first.
 */
export function redisAclRules(user: RedisUser, prefix = 'ca-a2a', mode: RedisAclMode = 'postgres'): string[] {
  if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new Error(`key prefix '${prefix}' would be a glob in an ACL pattern`);
  const channel = `&${prefix}:revocations`;
  const redisOnly = mode === 'redis-only';
  if (user === 'sidecar') {
    return [
      'on', `~${prefix}:rl:*`, `~${prefix}:once:*`, `~${prefix}:sources:*`, ...(redisOnly ? [`%R~${prefix}:revocations:live`] : []), channel, '-@all', ...CONNECTION,
      '+evalsha', '+eval', '+get', '+set', '+incrby', '+pttl', '+expire', '+multi', '+exec', '+sadd', '+scard', '+subscribe',
      ...(redisOnly ? ['+zrangebyscore'] : []),
    ];
  }
  return [
    'on', `~${prefix}:revoked:*`, `~${prefix}:revocations:live`, channel, '-@all', ...CONNECTION,
    '+multi', '+exec', '+set', '+zadd', '+zremrangebyscore', '+publish', ...(redisOnly ? ['+get'] : []),
  ];
}
