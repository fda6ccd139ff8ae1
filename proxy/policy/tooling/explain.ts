import { DENIALS } from '../../denials.js';
import { decide, type DecidingRule } from '../decide.js';
import { isPolicyLoadError, formatProblem } from '../errors.js';
import { evaluate } from '../evaluate.js';
import { loadPolicy } from '../load.js';
import { matchName } from '../matcher.js';
import type { RolePolicy, ServicePolicy, SourceLocation } from '../model.js';
import { readYamlSource } from '../yaml-source.js';
import { displayPath } from './diagnostics.js';
import { parseCommandArgs, pickFormat, processIo, stringOption, usageError, type Io } from './io.js';
import { selectionConflict, servicePolicyFile, servicesUnder } from './services.js';
import { didYouMean } from './suggest.js';

const HELP = `usage: ca-a2a policy explain ([DIR|FILE...] --service NAME | --policy FILE) --roles a,b --method M [--tool T] [--params JSON] [--format text|json]

The decision the sidecar makes for a caller holding these roles, and the rule that made it,
with its file:line:column. --service NAME: the shipped service, or with DIR|FILE arguments the
one policy under them serving NAME (as policy matrix finds it). --tool implies --method
tools/call. With --params (a JSON object or array; with --tool an object: the tool's arguments,
or the tools/call params when it has an "arguments" key, which must then be an object, and a
"name", if any, the --tool), the params or the arguments are also checked against their schemas.
Exit 0 when allowed, 1 when refused (in dry-run too, where the sidecar forwards it all the
same, as the output says), 2 on a usage error or a policy that does not load.
`;

export interface Explanation {
  readonly service: string;
  readonly version: string;
  /** dry-run: the sidecar forwards a call it refuses (counted and logged as would_deny). */
  readonly mode: ServicePolicy['mode'];
  readonly roles: readonly string[];
  readonly method: string;
  readonly tool: string | undefined;
  readonly allowed: boolean;
  readonly code: string | undefined;
  readonly status: number;
  readonly reason: string;
  readonly rule: (Omit<DecidingRule, 'location'> & { readonly location: SourceLocation }) | undefined;
  /** Roles of the token that the rbac file does not know (ignored by the sidecar). */
  readonly unknownRoles: readonly string[];
}

/** Explains one call against a loaded policy; the rule location is the allow/deny entry itself. */
export function explain(policy: ServicePolicy, roles: readonly string[], request: { method: string; tool?: string | undefined; params?: unknown }): Explanation {
  const toolCall = request.tool === undefined ? { params: request.params, toolArguments: undefined } : readToolParams(request.tool, request.params);
  // explainCommand refuses these shapes as usage errors; another caller passing one is a bug.
  if (typeof toolCall === 'string') throw new TypeError(toolCall);
  // Without params the question is RBAC alone; with them, the schemas are checked as the sidecar does.
  const call = { method: request.method, tool: request.tool, ...toolCall };
  const decision = request.params === undefined ? decide(policy, roles, call) : evaluate(policy, roles, call);
  const known = [...policy.roles.keys()];
  let reason = decision.allowed ? `allowed by role '${decision.rule?.role ?? '?'}'` : decision.reason;
  if (!decision.allowed && decision.code === 'authz.method_unknown') reason += didYouMean(request.method, policy.methods.keys());
  if (!decision.allowed && decision.code === 'authz.tool_denied' && request.tool !== undefined && !policy.tools.has(request.tool)) reason += didYouMean(request.tool, policy.tools.keys());
  if (!decision.allowed && decision.code === 'authz.no_roles') reason += roles.map((role) => didYouMean(role, known)).join('');
  return {
    service: policy.service,
    version: policy.version,
    mode: policy.mode,
    roles,
    method: request.method,
    tool: request.tool,
    allowed: decision.allowed,
    code: decision.allowed ? undefined : decision.code,
    status: decision.allowed ? 200 : DENIALS[decision.code].status,
    reason,
    rule: decision.rule ? { ...decision.rule, location: entryLocation(decision.rule, isToolRule(policy, decision.rule, request.method), !decision.allowed && decision.code === 'authz.arguments_denied') } : undefined,
    unknownRoles: roles.filter((role) => !policy.roles.has(role)),
  };
}

/**
 * --params with --tool, as the help and docs/policy.md say: the tools/call params when it has an
 * "arguments" key, else the tool's arguments. Returns the problem, naming --params, for any other
 * shape: each would otherwise be judged as a call nobody sends (MCP tools/call arguments are an
 * object, and --tool is the one tool asked about).
 */
export function readToolParams(tool: string, given: unknown): { readonly params: Record<string, unknown>; readonly toolArguments: unknown } | string {
  if (given === undefined) return { params: { name: tool, arguments: {} }, toolArguments: undefined };
  if (!isJsonObject(given)) return `--params with --tool must be a JSON object (the tool's arguments, or the tools/call params {"name", "arguments"}), got ${describeJson(given)}`;
  if (!Object.hasOwn(given, 'arguments')) return { params: { name: tool, arguments: given }, toolArguments: given };
  if (given.name !== undefined && given.name !== tool) return `--params "name" is ${JSON.stringify(given.name)} but --tool is '${tool}': leave "name" out or give the same tool`;
  if (!isJsonObject(given.arguments)) return `--params "arguments" must be a JSON object (MCP tools/call), got ${describeJson(given.arguments)}`;
  // The params as given (a _meta, or a key the method's schema refuses, included), named by --tool.
  return { params: { ...given, name: tool }, toolArguments: given.arguments };
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeJson(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return value === null ? 'null' : typeof value;
}

/** Whether decide() matched a tools: entry (tool grants open tool_holders methods too) or a method entry. */
function isToolRule(policy: ServicePolicy, rule: DecidingRule, method: string): boolean {
  const access = policy.methods.get(method)?.access;
  if (access === undefined || access === 'rbac') return false;
  // Method-level denies are checked first for every access kind.
  return !(rule.effect === 'deny' && policy.roles.get(rule.role) !== undefined && matchName((policy.roles.get(rule.role) as RolePolicy).deny, method) !== undefined);
}

/** The line of the allow/deny entry (decide() only knows the role's line). */
function entryLocation(rule: DecidingRule, isTool: boolean, argumentsRefused: boolean): SourceLocation {
  const file = rule.location.file;
  const source = readYamlSource(file);
  // Refused by an argument restriction: the schema that refused is the rule to read.
  if (argumentsRefused) return source.locate(['roles', rule.role, 'tools', 'arguments', rule.pattern]);
  const role = (source.data as { roles?: Record<string, { allow?: string[]; deny?: string[]; tools?: { allow?: string[]; deny?: string[] } }> } | undefined)?.roles?.[rule.role];
  const list = isTool ? role?.tools?.[rule.effect] : role?.[rule.effect];
  const index = list?.indexOf(rule.pattern) ?? -1;
  if (index < 0) return rule.location;
  return source.locate(isTool ? ['roles', rule.role, 'tools', rule.effect, index] : ['roles', rule.role, rule.effect, index]);
}

export async function explainCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, {
    service: { type: 'string' }, policy: { type: 'string' }, roles: { type: 'string' }, method: { type: 'string' },
    tool: { type: 'string' }, params: { type: 'string' }, format: { type: 'string' },
  }, HELP, io, 'explain');
  if ('exit' in args) return args.exit;
  const format = pickFormat(args.values.format, ['text', 'json'] as const, 'text');
  if (!format) return usageError(io, 'explain', `unknown format '${String(args.values.format)}'`, HELP);
  const service = stringOption(args, 'service');
  const policyFile = stringOption(args, 'policy');
  const conflict = selectionConflict(service, policyFile, args.positionals);
  if (conflict !== undefined) return usageError(io, 'explain', conflict, HELP);
  if (args.positionals.length > 0 && service === undefined) return usageError(io, 'explain', `DIR|FILE arguments go with --service NAME: unexpected argument '${args.positionals[0]}'`, HELP);
  const tool = stringOption(args, 'tool');
  const method = stringOption(args, 'method') ?? (tool !== undefined ? 'tools/call' : undefined);
  const rolesText = stringOption(args, 'roles');
  if (method === undefined || rolesText === undefined) return usageError(io, 'explain', 'give --roles and --method (or --tool)', HELP);
  let params: unknown;
  const paramsText = stringOption(args, 'params');
  if (paramsText !== undefined) {
    try {
      params = JSON.parse(paramsText);
    } catch {
      return usageError(io, 'explain', '--params is not JSON', HELP);
    }
    // JSON-RPC 2.0 §4.2: params is a structured value. A scalar is no request the sidecar would
    // forward, so no decision about it is worth printing.
    if (typeof params !== 'object' || params === null) {
      return usageError(io, 'explain', `--params must be a JSON object or array (JSON-RPC 2.0 §4.2), got ${params === null ? 'null' : typeof params}`, HELP);
    }
    const problem = tool !== undefined ? readToolParams(tool, params) : undefined;
    if (typeof problem === 'string') return usageError(io, 'explain', problem, HELP);
  }
  let policy: ServicePolicy;
  try {
    policy = args.positionals.length > 0 ? onePolicy(servicesUnder(args.positionals, service), service as string) : loadPolicy(servicePolicyFile({ service, policy: policyFile }));
  } catch (error) {
    // Not 1: a script asserting a refusal (`! ca-a2a policy explain …`) must not pass on a broken policy.
    io.err(`ca-a2a policy explain: ${isPolicyLoadError(error) ? `policy invalid (run policy check):\n${error.problems.map(formatProblem).join('\n')}` : (error as Error).message}\n`);
    return 2;
  }
  const roles = rolesText.split(',').map((role) => role.trim()).filter(Boolean);
  const result = explain(policy, roles, { method, tool, params });
  if (format === 'json') {
    io.out(`${JSON.stringify({ ...result, rule: result.rule ? { ...result.rule, location: { ...result.rule.location, file: displayPath(result.rule.location.file) } } : undefined }, null, 2)}\n`);
  } else {
    io.out(formatExplanation(result, policy));
  }
  return result.allowed ? 0 : 1;
}

/** The one policy serving the name: explain decides for one service, never for whichever came first. */
function onePolicy(policies: readonly ServicePolicy[], service: string): ServicePolicy {
  const [first, ...others] = policies;
  if (first === undefined || others.length > 0) throw new Error(`${policies.length} policies serve '${service}' (${policies.map((policy) => displayPath(policy.files[0] ?? '')).join(', ')}): give --policy FILE`);
  return first;
}

function formatExplanation(result: Explanation, policy: ServicePolicy): string {
  const rows: [string, string][] = [
    ['service', `${result.service} (${displayPath(policy.files[0] ?? '')}, version ${result.version})`],
    ['roles', result.roles.join(', ') + (result.unknownRoles.length > 0 ? `  (unknown to the policy, ignored: ${result.unknownRoles.join(', ')})` : '')],
    ['call', result.tool !== undefined ? `${result.method} ${result.tool}` : result.method],
    ['reason', result.reason],
  ];
  if (result.rule) {
    const { location } = result.rule;
    rows.push(['rule', `${result.rule.effect} '${result.rule.pattern}' of role '${result.rule.role}'`]);
    rows.push(['at', `${displayPath(location.file)}:${location.line}:${location.column}`]);
  } else if (!result.allowed) {
    rows.push(['rule', result.code === 'params.invalid' ? 'the params schema' : 'none: deny by default (no rule grants it)']);
  }
  if (!result.allowed && result.mode === 'dry-run') rows.push(['mode', 'dry-run: the sidecar forwards this call all the same (counted and logged as would_deny)']);
  const verdict = result.allowed ? 'ALLOW' : `DENY ${result.status} ${result.code ?? ''} (JSON-RPC ${DENIALS[result.code as keyof typeof DENIALS]?.rpcCode ?? ''})`;
  return `${verdict}\n${rows.map(([key, value]) => `  ${key.padEnd(7)} ${value}`).join('\n')}\n`;
}
