import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { RevocationSet } from '../stores/revocation-set.js';

/**
 * Layer 4, revocation: right after authentication, since a revoked token is no authentication.
 * An in-process lookup; the set is kept current by the revocation feed (stores/), so the hot
 * path never waits on the network.
 */
export function revocationLayer(revocations: RevocationSet): Layer {
  return {
    name: 'revocation',
    check(ctx: RequestContext): Verdict {
      const principal = ctx.principal;
      if (principal === undefined) return denial('internal.error', 'revocation check without a principal');
      // Before the first load from the durable store, "not in the set" proves nothing: fail closed.
      if (!revocations.loaded) return denial('revocation.not_loaded');
      return revocations.isRevoked(principal) ? denial('authn.token_revoked') : undefined;
    },
  };
}
