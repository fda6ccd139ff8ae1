import { decide } from '../decide.js';
import type { ServicePolicy } from '../model.js';
import type { YamlSource } from '../yaml-source.js';
import type { Diagnostic } from './diagnostics.js';
import { didYouMean } from './suggest.js';

/** Semantic rules for one service policy that loaded (schema-valid, schemas compiled). */
export function lintService(policy: ServicePolicy, source: YamlSource): Diagnostic[] {
  const out: Diagnostic[] = [];
  const report = (path: (string | number)[], severity: Diagnostic['severity'], rule: string, message: string, key?: string): void => {
    out.push({ ...source.locate(path, key), severity, rule, message });
  };
  const roles = [...policy.roles.keys()];

  for (const role of policy.rateLimit.perRole.keys()) {
    if (!policy.roles.has(role)) {
      report(['rate_limit', 'per_role'], 'error', 'unknown-role', `rate_limit.per_role names role '${role}', which the rbac file does not define${didYouMean(role, roles)}`, role);
    }
  }
  const perTool = [...policy.methods.values()].find((method) => method.access === 'per_tool');
  // A tool restricted by arguments is still reachable: some calls of it pass.
  const toolCallable = (tool: string): boolean => perTool !== undefined && roles.some((role) => {
    const decision = decide(policy, [role], { method: perTool.name, tool });
    return decision.allowed || decision.code === 'authz.arguments_denied';
  });
  const strictness = { off: 0, optional: 1, required: 2 } as const;
  for (const method of policy.methods.values()) {
    if (method.integrity !== undefined && strictness[method.integrity] < strictness[policy.integrity.dpop]) {
      report(['methods', method.name, 'integrity'], 'warning', 'integrity-relaxed', `method '${method.name}' relaxes integrity.dpop '${policy.integrity.dpop}' to '${method.integrity}': a call without a proof is forwarded`);
    }
    // tool_holders methods (MCP initialize, ping, tools/list) carry protocol params the sidecar does not own.
    if (method.access !== 'tool_holders' && method.validateParams === undefined) {
      report(['methods'], 'warning', 'method-without-params', `method '${method.name}' has no params schema: any params reach the agent`, method.name);
    }
    const reachable = method.access === 'per_tool'
      ? [...policy.tools.keys()].some(toolCallable)
      : roles.some((role) => decide(policy, [role], { method: method.name }).allowed);
    if (!reachable) report(['methods'], 'warning', 'unreachable-method', `no role may call '${method.name}': it is refused to everyone`, method.name);
  }
  for (const tool of policy.tools.keys()) {
    if (perTool === undefined) {
      report(['tools'], 'warning', 'unreachable-tool', `tool '${tool}' is served but no method has access: per_tool, so it cannot be called`, tool);
      continue;
    }
    if (!toolCallable(tool)) report(['tools'], 'warning', 'unreachable-tool', `no role may call tool '${tool}'`, tool);
  }
  return out;
}
