import { FORWARD, type Layer, type RequestContext, type Verdict } from '../context.js';
import type { ServicePolicy } from '../policy/model.js';

/**
 * Layer 2, public routes: an exact 'METHOD /path' match on the normalised path lets a request
 * through without a token; nothing else (query, headers, User-Agent) takes part in the match.
 * Also resolves which endpoint a POST is for; an unknown endpoint is refused after authentication
 * so that anonymous callers cannot map the service.
 */
export function routeLayer(policy: ServicePolicy): Layer {
  const publicRoutes = policy.publicRoutes;
  return {
    name: 'route',
    check(ctx: RequestContext): Verdict {
      const method = ctx.req.method === 'HEAD' ? 'GET' : ctx.req.method;
      if (publicRoutes.has(`${method} ${ctx.path}`) || publicRoutes.has(`${ctx.req.method} ${ctx.path}`)) {
        ctx.isPublic = true;
        return FORWARD;
      }
      ctx.endpoint = policy.endpoints.get(ctx.path);
      return undefined;
    },
  };
}
