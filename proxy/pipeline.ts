import type { Layer, RequestContext, Verdict } from './context.js';
import type { KeySource } from './auth/key-source.js';
import { authnLayer } from './layers/authn.js';
import { anomalyLayer, type AnomalyReport } from './layers/anomaly.js';
import { authzLayer } from './layers/authz.js';
import { integrityLayer } from './layers/integrity.js';
import { jsonrpcLayer } from './layers/jsonrpc.js';
import { paramsLayer } from './layers/params.js';
import { rateLimitLayer } from './layers/rate-limit.js';
import { replayLayer } from './layers/replay.js';
import { revocationLayer } from './layers/revocation.js';
import { shadowLayer, type ShadowDisagreement } from './layers/shadow.js';
import { routeLayer } from './layers/route.js';
import { bodyLayer, transportLayer, type BodyBudget } from './layers/transport.js';
import type { ServicePolicy } from './policy/model.js';
import type { RateLimitStore } from './stores/rate-limit.js';
import type { RevocationSet } from './stores/revocation-set.js';
import type { TokenSourceStore } from './stores/token-sources.js';
import type { OneTimeIdStore } from './stores/one-time-ids.js';

/** What the layers need from outside the policy: stores, keys, the clock, observers. */
export interface PipelineDeps {
  readonly keys: KeySource;
  readonly now: () => number;
  readonly revocations: RevocationSet;
  readonly rateLimits: RateLimitStore;
  readonly onRateLimitStoreError: (error: unknown) => void;
  readonly onTokenVerified: (cacheHit: boolean) => void;
  /** --shadow-policy: a candidate compared with this policy on every request; absent, no layer. */
  readonly shadow?: { readonly policy: ServicePolicy; readonly onDisagreement: ShadowDisagreement } | undefined;
  readonly tokenSources: TokenSourceStore;
  readonly onAnomaly: (report: AnomalyReport) => Promise<boolean>;
  readonly onTokenSourceStoreError: (error: unknown) => void;
  readonly oneTimeIds: OneTimeIdStore;
  readonly onReplayStoreError: (error: unknown, fallback: 'deny' | 'allow', first: boolean) => void;
  readonly onReplayStoreRecovered: () => void;
  /** --public-url values, for the DPoP htu check. */
  readonly publicUrls: readonly string[];
  /** The request body bytes the process holds, shared by every policy version. */
  readonly bodyBudget: BodyBudget;
}

/**
 * THE order of the inbound layers, built once per policy version. The policy switches layers on
 * and parameterises them; it cannot reorder them. A switched-off layer is absent from the array.
 */
export function buildPipeline(policy: ServicePolicy, deps: PipelineDeps): readonly Layer[] {
  const table: readonly (readonly [Layer | false, string])[] = [
    [transportLayer(policy, deps.bodyBudget), 'first: nothing may look at a path or a head that is not normalised, framed and bounded'],
    [routeLayer(policy, deps.revocations), 'public routes leave here and skip every check below; decided on the normalised path only'],
    [authnLayer(policy, { keys: deps.keys, now: deps.now, onVerified: deps.onTokenVerified }), 'every other request needs a verified caller'],
    [revocationLayer(deps.revocations), 'a revoked token is no authentication: checked right after it'],
    [bodyLayer(policy, deps.bodyBudget), 'read only for a caller authenticated and not revoked: a client without a valid token cannot make the sidecar hold its bytes'],
    [anomalyLayer(policy, { store: deps.tokenSources, now: deps.now, onAnomaly: deps.onAnomaly, onStoreError: deps.onTokenSourceStoreError }), 'needs the verified jti and source; never refuses, so its place cannot change a verdict'],
    [jsonrpcLayer(policy), 'only authenticated callers reach the parser'],
    [integrityLayer(policy, { publicUrls: deps.publicUrls, now: deps.now }), 'proof and body digest before any decision uses the body; after parsing since the mode can be per method; always on, since a key-bound token needs its proof whatever the mode'],
    [replayLayer(policy, { ids: deps.oneTimeIds, now: deps.now, onStoreError: deps.onReplayStoreError, onStoreRecovered: deps.onReplayStoreRecovered }), 'burns a proof id only once the proof is known good, so forgeries cannot spend ids; before the rate limit, so a captured proof replayed cannot spend its owner\'s budget'],
    [deps.shadow !== undefined && shadowLayer(policy, deps.shadow.policy, deps.shadow.onDisagreement), 'just before authz, so the requests authz refuses are compared too; never refuses, so it cannot change a verdict'],
    [authzLayer(policy), 'needs the roles (authn) and the methods and tools (jsonrpc)'],
    [paramsLayer(policy), 'after authz: a caller cannot probe the schemas of methods it may not call'],
    [policy.rateLimit.enabled && rateLimitLayer(policy, { store: deps.rateLimits, onStoreError: deps.onRateLimitStoreError }), 'keyed by principal, per-method budgets need the parsed method'],
  ];
  return Object.freeze(table.map(([layer]) => layer).filter((layer): layer is Layer => layer !== false));
}

/** Runs the layers in order; the first verdict that is not "pass" ends the run. */
export async function runPipeline(layers: readonly Layer[], ctx: RequestContext): Promise<Verdict> {
  // Indexed: an iterator held across an await is allocated, with its results, on every request.
  for (let i = 0; i < layers.length; i++) {
    let verdict = (layers[i] as Layer).check(ctx);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict !== undefined) return verdict;
  }
  return undefined;
}
