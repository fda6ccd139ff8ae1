import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { ServicePolicy } from '../policy/model.js';
import { isStoreUnavailable } from '../stores/store-error.js';
import { ForgottenIdError, type OneTimeIdStore } from '../stores/one-time-ids.js';

/**
 * How long after its iat any policy may accept a proof: the largest proof_max_age_seconds (300)
 * plus the largest leeway_seconds (60) the policy schema allows.
 */
export const LONGEST_PROOF_LIFE_SECONDS = 300 + 60;

export interface ReplayDeps {
  readonly ids: OneTimeIdStore;
  /** Milliseconds since the epoch, the clock the integrity layer judges iat by. */
  readonly now: () => number;
  /** Called when the store fails, with what the policy decided (deny or allow); `first` of an outage. */
  readonly onStoreError: (error: unknown, fallback: 'deny' | 'allow', first: boolean) => void;
  /** Called when the store answers again after failing. */
  readonly onStoreRecovered?: () => void;
}

/**
 * Layer 8, replay: a verified proof's jti is accepted once, across every replica sharing the
 * store, and remembered until its iat plus the longest window any policy accepts, not this
 * policy's: a reload that widens the window, or a replica still on a wider policy, must not find
 * a proof used under a narrower one fresh and unknown. The key includes the proof key's
 * thumbprint: one client cannot burn another's ids. Store down: fail closed (503) unless the
 * policy says integrity.replay_store_failure: allow. An in-memory store that forgot an id early
 * and cannot tell its replay from a new one is no outage: refused (503) whatever the policy says.
 */
export function replayLayer(policy: ServicePolicy, deps: ReplayDeps): Layer {
  const onFailure = policy.integrity.replayStoreFailure;
  // Whether the store's last answer was a failure: an outage is reported once, and its end.
  let failing = false;
  return {
    name: 'replay',
    // No proof, nothing to burn: answered without a promise.
    check(ctx: RequestContext): Verdict | Promise<Verdict> {
      const { proof, principal } = ctx;
      if (proof === undefined) return undefined;
      return principal === undefined ? denial('internal.error', 'replay check without a principal') : claim(proof, principal.subject);
    },
  };

  async function claim(proof: NonNullable<RequestContext['proof']>, caller: string): Promise<Verdict> {
    try {
      const ttlSeconds = Math.max(1, Math.ceil(proof.issuedAt + LONGEST_PROOF_LIFE_SECONDS - deps.now() / 1000));
      const seen = await deps.ids.claim(`dpop:${proof.thumbprint}:${proof.jti}`, ttlSeconds, proof.issuedAt, caller);
      if (failing) {
        failing = false;
        deps.onStoreRecovered?.();
      }
      return seen === 'new' ? undefined : denial('replay.duplicate_id');
    } catch (error) {
      if (!isStoreUnavailable(error)) throw error;
      // A forgotten id is one caller's narrowed window, not an outage: counted and refused, but
      // neither starts nor ends one (a flooding caller would make the outage lines flap).
      if (error instanceof ForgottenIdError) {
        deps.onStoreError(error, 'deny', false);
        return denial('replay.store_unavailable');
      }
      deps.onStoreError(error, onFailure, !failing);
      failing = true;
      return onFailure === 'allow' ? undefined : denial('replay.store_unavailable');
    }
  }
}
