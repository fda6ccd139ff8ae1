import type { Layer, RequestContext, RpcCall, Verdict } from '../context.js';
import type { DenialCode } from '../denials.js';
import { evaluate } from '../policy/evaluate.js';
import type { ServicePolicy } from '../policy/model.js';

/**
 * One policy's answer for a whole request: allow, or the first refusing call's code; `would_deny`
 * for the enforced policy's refusal in dry-run mode, where the request is forwarded all the same.
 */
export interface ShadowOutcome {
  readonly decision: 'allow' | 'deny' | 'would_deny';
  readonly code: DenialCode | undefined;
  /** The refusing call's method (and tool), for the audit line. */
  readonly method: string | undefined;
  readonly tool: string | undefined;
}

export type ShadowDisagreement = (ctx: RequestContext, enforced: ShadowOutcome, shadow: ShadowOutcome) => void;

/**
 * Shadow policy (Envoy's shadow_rules, for a whole candidate file): decides every request
 * under the enforced policy and under the candidate, with the same pure evaluate() the authz
 * and params layers implement, and reports each request where the two disagree. Always
 * passes and never throws: a candidate, however broken, cannot change what is enforced.
 */
export function shadowLayer(policy: ServicePolicy, shadow: ServicePolicy, onDisagreement: ShadowDisagreement): Layer {
  const dryRun = policy.mode === 'dry-run';
  return {
    name: 'shadow',
    check(ctx: RequestContext): Verdict {
      try {
        const roles = ctx.principal?.roles ?? [];
        const enforced = outcome(policy, roles, ctx.calls);
        const candidate = outcome(shadow, roles, ctx.calls);
        if (enforced.decision !== candidate.decision) {
          onDisagreement(ctx, dryRun && enforced.decision === 'deny' ? { ...enforced, decision: 'would_deny' } : enforced, candidate);
        }
      } catch {
        // Observability only: a failing comparison is dropped, the request goes on unchanged.
      }
      return undefined;
    },
  };
}

function outcome(policy: ServicePolicy, roles: readonly string[], calls: readonly RpcCall[]): ShadowOutcome {
  for (const call of calls) {
    let decision;
    try {
      decision = evaluate(policy, roles, call);
    } catch {
      // As in authz: an evaluation error is a deny.
      return { decision: 'deny', code: 'authz.method_denied', method: call.method, tool: call.tool };
    }
    if (!decision.allowed) return { decision: 'deny', code: decision.code, method: call.method, tool: call.tool };
  }
  return { decision: 'allow', code: undefined, method: undefined, tool: undefined };
}
