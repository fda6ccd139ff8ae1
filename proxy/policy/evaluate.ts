import { describeErrors } from './ajv.js';
import { decide, type AccessRequest, type Decision } from './decide.js';
import type { ServicePolicy } from './model.js';

/** One call as the authz and params layers see it: method, params, and the tool of a tools/call. */
export interface CallRequest extends AccessRequest {
  readonly params?: unknown;
}

/**
 * What the sidecar's authz then params layers would answer for one call, as a pure function:
 * the RBAC decision, then the method's params schema and the tool's arguments schema. Used by
 * the shadow layer (to compare two policies) and by `policy test` (expected refusal codes).
 */
export function evaluate(policy: ServicePolicy, roles: readonly string[], call: CallRequest): Decision {
  const decision = decide(policy, roles, call);
  if (!decision.allowed) return decision;
  const validate = policy.methods.get(call.method)?.validateParams;
  if (validate && !validate(call.params ?? {})) {
    return { allowed: false, code: 'params.invalid', reason: `params of '${call.method}': ${describeErrors(validate.errors, 3).join('; ')}`, rule: undefined };
  }
  const validateArguments = call.tool === undefined ? undefined : policy.tools.get(call.tool)?.validateArguments;
  if (validateArguments && !validateArguments(call.toolArguments ?? {})) {
    return { allowed: false, code: 'params.invalid', reason: `arguments of tool '${call.tool}': ${describeErrors(validateArguments.errors, 3).join('; ')}`, rule: undefined };
  }
  return decision;
}
