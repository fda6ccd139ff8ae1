import type { DenialCode } from '../denials.js';
import { matchName } from './matcher.js';
import type { RolePolicy, ServicePolicy, SourceLocation } from './model.js';

/** The rule that made a decision: which role, which pattern, where it is written. */
export interface DecidingRule {
  readonly role: string;
  readonly pattern: string;
  readonly effect: 'allow' | 'deny';
  readonly location: SourceLocation;
}

export type Decision =
  | { readonly allowed: true; readonly rule: DecidingRule | undefined }
  | { readonly allowed: false; readonly code: DenialCode; readonly reason: string; readonly rule: DecidingRule | undefined };

/** What is being asked: a method, and for tools/call the tool and its arguments. */
export interface AccessRequest {
  readonly method: string;
  readonly tool?: string | undefined;
  readonly toolArguments?: unknown;
}

/**
 * RBAC for one call. Deny by default; any role's explicit deny wins over every allow; a method
 * (or tool) the service policy does not name is refused for every role, admin's '*' included.
 * Pure: the sidecar, `policy explain`, `policy matrix` and tools/list filtering all use it.
 */
export function decide(policy: ServicePolicy, roleNames: readonly string[], request: AccessRequest): Decision {
  const method = policy.methods.get(request.method);
  if (!method) return { allowed: false, code: 'authz.method_unknown', reason: `'${request.method}' is not served by ${policy.service}`, rule: undefined };
  const roles = roleNames.map((name) => policy.roles.get(name)).filter((role): role is RolePolicy => role !== undefined);
  if (roles.length === 0) return { allowed: false, code: 'authz.no_roles', reason: 'no role known to the policy', rule: undefined };

  for (const role of roles) {
    const pattern = matchName(role.deny, request.method);
    if (pattern !== undefined) return { allowed: false, code: 'authz.explicit_deny', reason: `denied to role '${role.name}'`, rule: rule(role, pattern, 'deny') };
  }
  switch (method.access) {
    case 'rbac':
      for (const role of roles) {
        const pattern = matchName(role.allow, request.method);
        if (pattern !== undefined) return { allowed: true, rule: rule(role, pattern, 'allow') };
      }
      return { allowed: false, code: 'authz.method_denied', reason: `no role allows '${request.method}'`, rule: undefined };
    case 'tool_holders':
      for (const role of roles) {
        const tool = [...policy.tools.keys()].find((name) => toolGrant(role, name) !== undefined);
        if (tool !== undefined) return { allowed: true, rule: rule(role, toolGrant(role, tool) as string, 'allow') };
      }
      return { allowed: false, code: 'authz.method_denied', reason: 'no role holds a tool grant on this service', rule: undefined };
    case 'per_tool':
      return decideTool(policy, roles, request);
  }
}

function decideTool(policy: ServicePolicy, roles: readonly RolePolicy[], request: AccessRequest): Decision {
  const tool = request.tool;
  if (tool === undefined || !policy.tools.has(tool)) {
    return { allowed: false, code: 'authz.tool_denied', reason: tool === undefined ? 'no tool named' : `tool '${tool}' is not served here`, rule: undefined };
  }
  for (const role of roles) {
    const pattern = matchName(role.toolDeny, tool);
    if (pattern !== undefined) return { allowed: false, code: 'authz.tool_denied', reason: `tool '${tool}' denied to role '${role.name}'`, rule: rule(role, pattern, 'deny') };
  }
  let restricted: RolePolicy | undefined;
  for (const role of roles) {
    const pattern = toolGrant(role, tool);
    if (pattern === undefined) continue;
    const restriction = role.toolArguments.get(tool);
    if (!restriction || restriction(request.toolArguments ?? {})) return { allowed: true, rule: rule(role, pattern, 'allow') };
    restricted = role;
  }
  if (restricted) {
    return { allowed: false, code: 'authz.arguments_denied', reason: `arguments of '${tool}' outside what role '${restricted.name}' may use`, rule: rule(restricted, tool, 'allow') };
  }
  return { allowed: false, code: 'authz.tool_denied', reason: `no role allows tool '${tool}'`, rule: undefined };
}

function toolGrant(role: RolePolicy, tool: string): string | undefined {
  return matchName(role.toolDeny, tool) === undefined ? matchName(role.toolAllow, tool) : undefined;
}

function rule(role: RolePolicy, pattern: string, effect: 'allow' | 'deny'): DecidingRule {
  return { role: role.name, pattern, effect, location: role.location };
}

/** The tools a set of roles may call (argument restrictions aside): what tools/list shows them. */
export function visibleTools(policy: ServicePolicy, roleNames: readonly string[]): Set<string> {
  const roles = roleNames.map((name) => policy.roles.get(name)).filter((role): role is RolePolicy => role !== undefined);
  const visible = new Set<string>();
  // None, where tools/call itself is refused before its tool is looked at (decide()'s first steps).
  if (!policy.methods.has('tools/call') || roles.some((role) => matchName(role.deny, 'tools/call') !== undefined)) return visible;
  for (const tool of policy.tools.keys()) {
    const denied = roles.some((role) => matchName(role.toolDeny, tool) !== undefined);
    if (!denied && roles.some((role) => matchName(role.toolAllow, tool) !== undefined)) visible.add(tool);
  }
  return visible;
}
