import { FORWARD, type Layer, type RequestContext, type Verdict } from '../context.js';
import { denial } from '../denials.js';
import type { ServicePolicy } from '../policy/model.js';
import type { RevocationSet } from '../stores/revocation-set.js';

/**
 * Layer 2, public routes: an exact 'METHOD /path' match on the normalised path lets a request
 * through without a token, once the sidecar is ready; nothing else (query, headers, User-Agent)
 * takes part in the match.
 * Also resolves which endpoint a POST is for; an unknown endpoint is refused after authentication
 * so that anonymous callers cannot map the service.
 */
export function routeLayer(policy: ServicePolicy, revocations: RevocationSet): Layer {
  const publicRoutes = policy.publicRoutes;
  return {
    name: 'route',
    check(ctx: RequestContext): Verdict {
      const method = ctx.req.method === 'HEAD' ? 'GET' : ctx.req.method;
      if (publicRoutes.has(`${method} ${ctx.path}`) || publicRoutes.has(`${ctx.req.method} ${ctx.path}`)) {
        ctx.isPublic = true;
        // Not ready, the sidecar refuses every token (revocation layer): its public routes say so
        // too, so that a load balancer checking GET /health on the traffic port sends no traffic
        // to a task that would refuse it all.
        if (!revocations.loaded) return denial('revocation.not_loaded', 'not ready: the revocation list is not loaded yet');
        return FORWARD;
      }
      ctx.endpoint = policy.endpoints.get(ctx.path);
      return undefined;
    },
  };
}
