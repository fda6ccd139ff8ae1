import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial, type Denial } from '../denials.js';
import { describeErrors } from '../policy/ajv.js';
import type { ServicePolicy } from '../policy/model.js';

/**
 * Layer 7, validation: each call's params against its method's JSON Schema (compiled once per
 * policy version), and a tool call's arguments against the tool's schema. → 400 / -32602 with
 * the failing paths.
 */
export function paramsLayer(policy: ServicePolicy): Layer {
  const dryRun = policy.mode === 'dry-run';
  return {
    name: 'params',
    check(ctx: RequestContext): Verdict {
      for (const call of ctx.calls) {
        const refusal = checkCall(policy, ctx, call.index, call.method, call.params, call.tool, call.toolArguments);
        if (refusal === undefined) continue;
        if (!dryRun) return refusal;
        ctx.wouldDeny.push(refusal);
      }
      return undefined;
    },
  };
}

function checkCall(policy: ServicePolicy, ctx: RequestContext, index: number, method: string, params: unknown, tool: string | undefined, args: unknown): Denial | undefined {
  const element = ctx.batch ? { element: index } : {};
  const validate = policy.methods.get(method)?.validateParams;
  if (validate && !validate(params ?? {})) {
    return denial('params.invalid', `params of '${method}'`, { data: { ...element, errors: describeErrors(validate.errors) } });
  }
  const validateArguments = tool === undefined ? undefined : policy.tools.get(tool)?.validateArguments;
  if (validateArguments && !validateArguments(args ?? {})) {
    return denial('params.invalid', `arguments of tool '${tool}'`, { data: { ...element, errors: describeErrors(validateArguments.errors) } });
  }
  return undefined;
}
