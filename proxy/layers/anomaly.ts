import type { Layer, Principal, RequestContext, Verdict } from '../context.js';
import { normaliseIp } from '../http/cidr.js';
import type { ServicePolicy } from '../policy/model.js';
import type { TokenSourceStore } from '../stores/token-sources.js';

/** One raised alarm: a token seen from more addresses than the policy allows. */
export interface AnomalyReport {
  readonly principal: Principal;
  /** The request whose new source address raised it. */
  readonly requestId: string;
  readonly source: string;
  readonly sources: number;
  readonly maxSources: number;
  readonly autoRevoke: boolean;
}

export interface AnomalyDeps {
  readonly store: TokenSourceStore;
  readonly now: () => number;
  /**
   * Raises the alarm (and revokes, if the policy says so); resolves to false when the durable
   * revocation failed, so that a request already past the revocation layer (the sidecar revoked
   * the jti locally then) raises it again rather than never.
   */
  readonly onAnomaly: (report: AnomalyReport) => Promise<boolean>;
  readonly onStoreError: (error: unknown) => void;
}

// Pairs (jti, address) this layer already sent to the store: a token reused from the same
// address — nearly every request — costs no store call at all.
const SEEN_PAIRS_MAX = 20_000;

/**
 * The stolen-token alarm (the seed's "one jti from several IPs"). Never refuses and never makes
 * the request wait: it notes the source address and returns at once; the store call runs on its
 * own and its answer (or failure) only raises the alarm or is counted. Sits after revocation:
 * it needs the verified jti, and a revoked token needs no alarm.
 */
export function anomalyLayer(policy: ServicePolicy, deps: AnomalyDeps): Layer | false {
  const config = policy.anomaly;
  if (!config.enabled) return false;
  const seen = new Set<string>();
  const alarmed = new Set<string>();
  return {
    name: 'anomaly',
    check(ctx: RequestContext): Verdict {
      const principal = ctx.principal;
      if (!principal) return undefined;
      // Resolved once by transport, by anomaly.trusted_proxies: the client behind a trusted proxy, else the peer.
      const source = ctx.clientIp ?? normaliseIp(ctx.sourceIp);
      const pair = `${principal.jti}\n${source}`;
      if (seen.has(pair)) return undefined;
      if (seen.size >= SEEN_PAIRS_MAX) seen.clear();
      seen.add(pair);
      const lifetime = principal.expiresAt - deps.now() / 1000;
      const ttl = Math.max(1, Math.min(config.windowSeconds, Math.ceil(lifetime)));
      deps.store.add(principal.jti, source, ttl).then((count) => {
        if (count <= config.maxSources || alarmed.has(principal.jti)) return;
        if (alarmed.size >= SEEN_PAIRS_MAX) alarmed.clear();
        alarmed.add(principal.jti);
        void deps.onAnomaly({ principal, requestId: ctx.requestId, source, sources: count, maxSources: config.maxSources, autoRevoke: config.autoRevoke }).then((done) => {
          if (!done) alarmed.delete(principal.jti);
        });
      }, (error: unknown) => {
        // Let the next request from this address try again.
        seen.delete(pair);
        deps.onStoreError(error);
      });
      return undefined;
    },
  };
}
