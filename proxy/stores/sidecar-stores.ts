import type { Logger } from 'pino';
import type { AnomalyReport } from '../layers/anomaly.js';
import type { AuditLog } from '../observe/audit.js';
import type { SidecarMetrics } from '../observe/metrics.js';
import { openRevocationBackend, type RevocationBackend, type StoreOptions } from './backends.js';
import { SubscriberSilentError } from './revocation-bus.js';
import { OutageLog } from './outage-log.js';
import { MemoryOneTimeIds, RedisOneTimeIds, type OneTimeIdStore } from './one-time-ids.js';
import { memoryCounters, SlidingWindowRateLimit, type RateLimitStore } from './rate-limit.js';
import { redisCounters } from './rate-limit-redis.js';
import { RevocationSet } from './revocation-set.js';
import { RevocationSync } from './revocation-sync.js';
import { jtiRevokedUntil, Revoker, type RevokeResult } from './revoker.js';
import { MemoryTokenSources, RedisTokenSources, type TokenSourceStore } from './token-sources.js';

/** Store options of one sidecar; see StoreOptions for the backend selection. */
export interface SidecarStoreOptions extends StoreOptions {
  /** Safety resync of revocations from the durable store (default 30 s). */
  readonly resyncIntervalMs?: number;
}

/** Everything stateful a sidecar's layers use, on the backends the options select. */
export interface SidecarStores {
  readonly revocations: RevocationSet;
  readonly revoker: Revoker;
  readonly sync: RevocationSync;
  readonly rateLimits: RateLimitStore;
  readonly oneTimeIds: OneTimeIdStore;
  readonly tokenSources: TokenSourceStore;
  readonly backend: RevocationBackend;
  /**
   * What the sidecar does with a stolen-token alarm: audit, count, and revoke if the policy says so;
   * false when the durable revocation failed (this sidecar then revoked the jti locally).
   */
  onAnomaly(report: AnomalyReport): Promise<boolean>;
  onTokenSourceStoreError(error: unknown): void;
  close(): Promise<void>;
}

interface Observers {
  readonly service: string;
  readonly metrics: SidecarMetrics;
  readonly audit: AuditLog;
  readonly logger: Logger;
  readonly now: () => number;
}

/**
 * Opens a sidecar's stores. Returns before Redis or PostgreSQL have answered: the revocation set
 * reports `loaded` once the first full load succeeded, and the sidecar is not ready until then.
 */
export async function openSidecarStores(options: SidecarStoreOptions, o: Observers): Promise<SidecarStores> {
  const { service, metrics, logger, now } = o;
  // A log line per outage and per change of its cause, not one per failed command; counted metrics carry the rest.
  const down = { redis: new OutageLog(now), postgres: new OutageLog(now) };
  const backend = await openRevocationBackend(options, (store, error) => {
    // Pushes were lost on a silent subscriber connection until it is replaced and the set reloaded.
    if (error instanceof SubscriberSilentError) metrics.storeErrors.inc({ service, store: 'revocation', fallback: revocations.loaded ? 'cached' : 'deny' });
    if (!down[store].failed(error.message)) return;
    logger.error({ event_type: 'store_failure', store, err: error.message }, `${store} unreachable`);
  });
  const redis = backend.redis;
  let insuranceLogged = false;
  const redisBack = (): void => {
    if (down.redis.recovered()) logger.info({ event_type: 'store_recovered', store: 'redis' }, 'redis reachable again');
  };
  redis?.on('ready', () => {
    redisBack();
    insuranceLogged = false;
  });
  // The subscriber connection, replaced alone when it went silent, is subscribed again. (Not
  // backend.bus: with a journal it also resyncs on the journal's changes, Redis down or not.)
  const unsubscribeRecovery = backend.redisBus?.subscribe({ onRevocation: () => undefined, onResync: redisBack });
  const prefix = backend.keyPrefix;
  const counters = redis
    ? redisCounters(redis, () => {
      metrics.storeErrors.inc({ service, store: 'rate_limit', fallback: 'insurance' });
      if (insuranceLogged) return;
      insuranceLogged = true;
      logger.warn({ event_type: 'store_failure', store: 'rate_limit', fallback: 'insurance' }, 'rate limits use the in-memory insurance limiter (per replica) until Redis is back');
    })
    : memoryCounters;
  const rateLimits = new SlidingWindowRateLimit(counters, `${prefix}:rl`, now);
  const oneTimeIds: OneTimeIdStore = redis ? new RedisOneTimeIds(redis, `${prefix}:once`) : new MemoryOneTimeIds({ now });
  const tokenSources: TokenSourceStore = redis ? new RedisTokenSources(redis, `${prefix}:sources`) : new MemoryTokenSources({ now });

  const revocations = new RevocationSet({ loaded: false });
  const sync = new RevocationSync({
    set: revocations,
    store: backend.store,
    bus: backend.bus,
    now,
    resyncIntervalMs: options.resyncIntervalMs,
    onApplied: (revocation, source) => metrics.revocations.inc({ service, kind: revocation.kind, source }),
    onLoaded: (count, first) => {
      // The outage is over: the next one is logged as well.
      if (down.postgres.recovered()) logger.info({ event_type: 'store_recovered', store: 'revocation' }, 'revocation store answers again');
      if (first) logger.info({ event_type: 'revocations_loaded', count, durable: backend.describe.durable }, 'revocations loaded');
    },
    onError: (error, during) => {
      metrics.storeErrors.inc({ service, store: 'revocation', fallback: during === 'load' && !revocations.loaded ? 'deny' : 'cached' });
      if (during === 'load' && !down.postgres.failed((error as Error).message)) return;
      logger.error({ event_type: 'store_failure', store: 'revocation', during, err: (error as Error).message }, revocations.loaded ? 'revocation store unreachable; the in-process set keeps being enforced' : 'revocations not loaded yet; requests are refused until they are');
    },
  });
  const revoker = new Revoker({
    store: backend.store,
    bus: backend.bus,
    now,
    onRevoked: (result) => auditRevocation(o.audit, result),
    onPushError: (error) => logger.warn({ event_type: 'store_failure', store: 'revocation_push', err: (error as Error).message }, 'revocation durable but not pushed; peers pick it up at their next resync'),
  });
  await sync.start();
  return {
    revocations, revoker, sync, rateLimits, oneTimeIds, tokenSources, backend,
    onAnomaly: (report) => handleAnomaly(report, o, revoker, revocations),
    onTokenSourceStoreError: (error) => {
      metrics.storeErrors.inc({ service, store: 'token_sources', fallback: 'skip' });
      logger.debug({ event_type: 'store_failure', store: 'token_sources', err: (error as Error).message }, 'stolen-token check skipped');
    },
    async close() {
      unsubscribeRecovery?.();
      await sync.close();
      await rateLimits.close();
      await oneTimeIds.close();
      await tokenSources.close();
      await backend.close();
    },
  };
}

/**
 * The audit line of a revocation, written once by the process that made it durable: the record
 * as stored, and who asked this time (`requested_by`; on a retry that found one in force, its
 * reason as well, which the store does not keep).
 */
export function auditRevocation(audit: Pick<AuditLog, 'event'>, result: RevokeResult): void {
  const { record, requested } = result;
  const r = record.revocation;
  audit.event('token_revoked', {
    ...(result.requestId === undefined ? {} : { request_id: result.requestId }),
    kind: r.kind,
    ...(r.kind === 'jti' ? { jti: r.jti } : r.kind === 'subject' ? { subject: r.subject } : {}),
    revoked_at: new Date(record.revokedAt * 1000).toISOString(),
    ...(r.kind !== 'jti' ? { not_after: new Date(r.revokedAt * 1000).toISOString() } : {}),
    expires_at: new Date(r.expiresAt * 1000).toISOString(),
    revoked_by: record.revokedBy,
    reason: record.reason,
    requested_by: requested.revokedBy,
    ...(result.created ? {} : { requested_reason: requested.reason }),
    created: result.created,
    pushed: result.pushed,
  }, 'token revoked', 'warn');
}

/** The values of `action` on `ca_a2a_anomalous_token_usage_total` and the `anomalous_token_usage` line. */
export const ANOMALY_ACTIONS = ['logged', 'revoked', 'already_revoked', 'revoked_locally'] as const;
export type AnomalyAction = (typeof ANOMALY_ACTIONS)[number];

function handleAnomaly(report: AnomalyReport, o: Observers, revoker: Revoker, revocations: RevocationSet): Promise<boolean> {
  const { principal } = report;
  const fields = {
    request_id: report.requestId, jti: principal.jti, subject: principal.subject, client_id: principal.clientId, source_ip: report.source,
    sources: report.sources, max_sources: report.maxSources, auto_revoke: report.autoRevoke,
  };
  const raise = (action: AnomalyAction, extra: Record<string, unknown> = {}): void => {
    o.metrics.anomalousTokenUsage.inc({ service: o.service, action });
    o.audit.event('anomalous_token_usage', { ...fields, action, ...extra }, 'token used from more source addresses than allowed', 'warn');
  };
  if (!report.autoRevoke) {
    raise('logged');
    return Promise.resolve(true);
  }
  // The token was just accepted, so its exp is at most the clock tolerance (≤ 300 s) past: never
  // refused as long past, even when the revocation starts a moment later. The revocation is kept
  // until now + 300 s at least either way.
  const expiresAt = Math.max(principal.expiresAt, o.now() / 1000);
  return revoker.revoke({
    kind: 'jti', jti: principal.jti, expiresAt,
    reason: `anomalous usage: seen from ${report.sources} source addresses (max ${report.maxSources})`,
    revokedBy: `sidecar:${o.service}`,
    requestId: report.requestId,
  }).then((result) => {
    // Revoked already (another replica's alarm, an operator): this alarm revoked nothing.
    raise(result.created ? 'revoked' : 'already_revoked');
    return true;
  }, (error: unknown) => {
    // Fail closed here at least: a read-only role (the AWS stack's revocations_reader) or
    // PostgreSQL down leaves the token valid elsewhere, but this sidecar stops honouring it, for
    // as long as the durable path would have kept it. The set's loads only add and prune expired
    // entries, so a resync does not drop it. Every replica that sees the token from then on finds
    // the shared source count past the limit and does the same.
    const until = jtiRevokedUntil(expiresAt, o.now() / 1000);
    if (revocations.add({ kind: 'jti', jti: principal.jti, expiresAt: until })) o.metrics.revocations.inc({ service: o.service, kind: 'jti', source: 'local' });
    raise('revoked_locally', { err: (error as Error).message, expires_at: new Date(until * 1000).toISOString() });
    return false;
  });
}
