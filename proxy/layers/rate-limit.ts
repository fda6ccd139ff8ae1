import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { RateLimitRule, ServicePolicy } from '../policy/model.js';
import type { RateLimitStore } from '../stores/rate-limit.js';

export interface RateLimitDeps {
  readonly store: RateLimitStore;
  /** Called when the store fails; the request is then let through (documented fail-open). */
  readonly onStoreError: (error: unknown) => void;
}

/**
 * Layer 8, rate limiting per principal (sub), after validation as the issue orders it. The rule:
 * the method's own budget if it has one, else the most generous budget among the caller's roles,
 * else the service default. A batch spends one point per call. Keys carry the service name so
 * every replica of a service shares one budget when the store is Redis.
 */
export function rateLimitLayer(policy: ServicePolicy, deps: RateLimitDeps): Layer {
  const { defaultRule, perRole } = policy.rateLimit;
  return {
    name: 'rate-limit',
    async check(ctx: RequestContext): Promise<Verdict> {
      const principal = ctx.principal;
      if (!principal) return denial('internal.error', 'rate limit without a principal');
      const methodRule = ctx.calls.length === 1 ? policy.methods.get(ctx.calls[0]?.method ?? '')?.rateLimit : undefined;
      let rule: RateLimitRule = defaultRule;
      let scope = 'default';
      if (methodRule) {
        rule = methodRule;
        scope = `method:${ctx.calls[0]?.method}`;
      } else {
        for (const role of principal.roles) {
          const candidate = perRole.get(role);
          if (candidate && candidate.points / candidate.windowSeconds > (scope === 'default' ? 0 : rule.points / rule.windowSeconds)) {
            rule = candidate;
            scope = `role:${role}`;
          }
        }
      }
      let outcome;
      try {
        outcome = await deps.store.consume(`${policy.service}:${scope}:${principal.subject}`, rule, Math.max(1, ctx.calls.length));
      } catch (error) {
        deps.onStoreError(error);
        return undefined;
      }
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
