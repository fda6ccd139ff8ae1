import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial, type Denial } from '../denials.js';
import { decide } from '../policy/decide.js';
import type { ServicePolicy } from '../policy/model.js';

/**
 * Layer 6, authorization: every call of the request (each batch element) must be allowed for
 * the caller's roles; the first refusal names its element. A rule that throws denies.
 * In dry-run mode a refusal is recorded as would_deny and the request goes on.
 */
export function authzLayer(policy: ServicePolicy): Layer {
  const dryRun = policy.mode === 'dry-run';
  return {
    name: 'authz',
    check(ctx: RequestContext): Verdict {
      const roles = ctx.principal?.roles ?? [];
      for (const call of ctx.calls) {
        let refusal: Denial | undefined;
        try {
          const decision = decide(policy, roles, call);
          if (!decision.allowed) refusal = denial(decision.code, decision.reason, ctx.batch ? { data: { element: call.index, method: call.method } } : undefined);
        } catch {
          refusal = denial('authz.method_denied', 'rule evaluation failed');
        }
        if (refusal === undefined) continue;
        if (!dryRun) return refusal;
        ctx.wouldDeny.push(refusal);
      }
      return undefined;
    },
  };
}
