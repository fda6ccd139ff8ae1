import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { RateLimitRule, ServicePolicy } from '../policy/model.js';
import type { RateLimitOutcome, RateLimitStore } from '../stores/rate-limit.js';

export interface RateLimitDeps {
  readonly store: RateLimitStore;
  /**
   * Called when the store throws, which it does only if its in-memory insurance limiter failed too
   * (Redis down alone is answered by that limiter): the request is then let through, counted as
   * fallback="allow" (docs/policy.md).
   */
  readonly onStoreError: (error: unknown) => void;
}

/** A budget a call spends from: its rule, and the key part that names it. */
interface Budget {
  readonly rule: RateLimitRule;
  readonly scope: string;
}

/**
 * Layer 8, rate limiting per principal (sub), after validation as the issue orders it. The rule of
 * a call: its method's own budget if it has one, else the most generous budget among the caller's
 * roles, else the service default. A batch spends one point per call, each from its own call's
 * budget, and is refused when any of them is spent. Keys carry the service name so every replica
 * of a service shares one budget when the store is Redis.
 */
export function rateLimitLayer(policy: ServicePolicy, deps: RateLimitDeps): Layer {
  // Names are encoded in keys: a role or method may hold ':', and `role:a:b` + sub `c` must never
  // be the key of `role:a` + sub `b:c`.
  const defaultBudget: Budget = { rule: policy.rateLimit.defaultRule, scope: 'default' };
  const roleBudgets = new Map<string, Budget>();
  for (const [role, rule] of policy.rateLimit.perRole) roleBudgets.set(role, { rule, scope: `role:${encodeURIComponent(role)}` });
  const methodBudgets = new Map<string, Budget>();
  for (const method of policy.methods.values()) {
    if (method.rateLimit) methodBudgets.set(method.name, { rule: method.rateLimit, scope: `method:${encodeURIComponent(method.name)}` });
  }

  /** The budget of calls without one of their own: the most generous role budget, else the default. */
  const callerBudget = (roles: readonly string[]): Budget => {
    let budget = defaultBudget;
    for (const role of roles) {
      const candidate = roleBudgets.get(role);
      if (candidate && candidate.rule.points / candidate.rule.windowSeconds > (budget === defaultBudget ? 0 : budget.rule.points / budget.rule.windowSeconds)) budget = candidate;
    }
    return budget;
  };

  /** What each budget a batch spends from is charged: one point per call. */
  const batchCharges = (calls: RequestContext['calls'], roles: readonly string[]): Map<Budget, number> => {
    const charges = new Map<Budget, number>();
    let caller: Budget | undefined;
    for (const call of calls) {
      const budget = methodBudgets.get(call.method) ?? (caller ??= callerBudget(roles));
      charges.set(budget, (charges.get(budget) ?? 0) + 1);
    }
    return charges;
  };

  const spend = (subject: string, budget: Budget, cost: number): Promise<RateLimitOutcome> =>
    deps.store.consume(`${policy.service}:${budget.scope}:${subject}`, budget.rule, cost);

  return {
    name: 'rate-limit',
    async check(ctx: RequestContext): Promise<Verdict> {
      const principal = ctx.principal;
      if (!principal) return denial('internal.error', 'rate limit without a principal');
      let budget: Budget;
      let outcome: RateLimitOutcome;
      try {
        if (ctx.calls.length <= 1) {
          budget = methodBudgets.get(ctx.calls[0]?.method ?? '') ?? callerBudget(principal.roles);
          outcome = await spend(principal.subject, budget, 1);
        } else {
          const charges = [...batchCharges(ctx.calls, principal.roles)];
          const outcomes = await Promise.all(charges.map(([each, cost]) => spend(principal.subject, each, cost)));
          // The headers describe the budget that refused, else the one closest to running out.
          let at = 0;
          for (let i = 1; i < outcomes.length; i++) {
            const [best, next] = [outcomes[at] as RateLimitOutcome, outcomes[i] as RateLimitOutcome];
            if (best.allowed && (!next.allowed || next.remaining < best.remaining)) at = i;
          }
          budget = (charges[at] as [Budget, number])[0];
          outcome = outcomes[at] as RateLimitOutcome;
        }
      } catch (error) {
        deps.onStoreError(error);
        return undefined;
      }
      const rule = budget.rule;
      const headers = {
        'ratelimit-limit': String(outcome.limit),
        'ratelimit-remaining': String(outcome.remaining),
        'ratelimit-reset': String(outcome.resetSeconds),
        'ratelimit-policy': `${rule.points};w=${rule.windowSeconds}`,
      };
      if (!outcome.allowed) return denial('ratelimit.exceeded', `${rule.points} requests per ${rule.windowSeconds} s`, { headers: { ...headers, 'retry-after': String(outcome.resetSeconds) } });
      Object.assign(ctx.responseHeaders, headers);
      return undefined;
    },
  };
}
