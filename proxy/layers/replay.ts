import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { ServicePolicy } from '../policy/model.js';
import { isStoreUnavailable } from '../stores/store-error.js';
import type { OneTimeIdStore } from '../stores/one-time-ids.js';

export interface ReplayDeps {
  readonly ids: OneTimeIdStore;
  /** Called when the store fails, with what the policy decided (deny or allow). */
  readonly onStoreError: (error: unknown, fallback: 'deny' | 'allow') => void;
}

/**
 * Layer 8, replay: a verified proof's jti is accepted once, for as long as a proof can be fresh
 * (acceptance window plus leeway), across every replica sharing the store. The key includes the
 * proof key's thumbprint: one client cannot burn another's ids. Store down: fail closed (503)
 * unless the policy says integrity.replay_store_failure: allow.
 */
export function replayLayer(policy: ServicePolicy, deps: ReplayDeps): Layer {
  const ttlSeconds = policy.integrity.proofMaxAgeSeconds + 2 * policy.integrity.leewaySeconds;
  const onFailure = policy.integrity.replayStoreFailure;
  return {
    name: 'replay',
    // No proof, nothing to burn: answered without a promise.
    check(ctx: RequestContext): Verdict | Promise<Verdict> {
      const proof = ctx.proof;
      return proof === undefined ? undefined : claim(proof);
    },
  };

  async function claim(proof: NonNullable<RequestContext['proof']>): Promise<Verdict> {
    try {
      const seen = await deps.ids.claim(`dpop:${proof.thumbprint}:${proof.jti}`, ttlSeconds, proof.issuedAt);
      return seen === 'new' ? undefined : denial('replay.duplicate_id');
    } catch (error) {
      if (!isStoreUnavailable(error)) throw error;
      deps.onStoreError(error, onFailure);
      return onFailure === 'allow' ? undefined : denial('replay.store_unavailable');
    }
  }
}
