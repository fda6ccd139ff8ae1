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
 */
export type RedisUser = 'sidecar' | 'admin';

const CONNECTION = ['+ping', '+info', '+client|setname', '+quit'] as const;

/** The ACL rules of `user` for key prefix `prefix` (CA_A2A_KEY_PREFIX, default `ca-a2a`), `on` first. */
export function redisAclRules(user: RedisUser, prefix = 'ca-a2a'): string[] {
  if (!/^[A-Za-z0-9_.-]+$/.test(prefix)) throw new Error(`key prefix '${prefix}' would be a glob in an ACL pattern`);
  const channel = `&${prefix}:revocations`;
  if (user === 'sidecar') {
    return [
      'on', `~${prefix}:rl:*`, `~${prefix}:once:*`, `~${prefix}:sources:*`, channel, '-@all', ...CONNECTION,
      '+evalsha', '+eval', '+get', '+set', '+incrby', '+pttl', '+expire', '+multi', '+exec', '+sadd', '+scard', '+subscribe',
    ];
  }
  return [
    'on', `~${prefix}:revoked:*`, `~${prefix}:revocations:live`, channel, '-@all', ...CONNECTION,
    '+multi', '+exec', '+set', '+zadd', '+zremrangebyscore', '+publish',
  ];
}
