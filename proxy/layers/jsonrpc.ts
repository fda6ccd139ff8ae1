import type { Layer, RequestContext, RpcCall, Verdict } from '../context.js';
import { denial } from '../denials.js';
import { isToolName, readEnvelope, TOOL_NAME_RULE, toolCall } from '../jsonrpc/envelope.js';
import { parseStrictJson } from '../jsonrpc/strict-json.js';
import type { ServicePolicy } from '../policy/model.js';

const PROBLEM_CODES = {
  parse: 'jsonrpc.parse_error',
  duplicate_key: 'jsonrpc.duplicate_key',
  forbidden_key: 'jsonrpc.forbidden_key',
  too_deep: 'jsonrpc.too_deep',
} as const;

/**
 * Layer 5, parsing: the body becomes a list of calls (one, or a batch) with nothing ambiguous
 * left: strict JSON (no duplicate or prototype keys, bounded depth), strict JSON-RPC 2.0
 * envelope. The seed's /call_tool body and rest endpoints become the same call shape, so every
 * later layer sees one model.
 */
export function jsonrpcLayer(policy: ServicePolicy): Layer {
  const { maxDepth, maxBatch } = policy.limits;
  return {
    name: 'jsonrpc',
    check(ctx: RequestContext): Verdict {
      const endpoint = ctx.endpoint;
      if (!endpoint) return denial('transport.not_found');
      if (ctx.req.method !== endpoint.httpMethod) return denial('transport.method_not_allowed', undefined, { headers: { allow: endpoint.httpMethod } });

      if (endpoint.kind === 'rest' && endpoint.httpMethod === 'GET') {
        ctx.calls = [toolCall(0, undefined, endpoint.method as string, {})];
        return undefined;
      }
      const parsed = parseStrictJson(ctx.body ?? Buffer.alloc(0), maxDepth);
      if (!parsed.ok) return denial(PROBLEM_CODES[parsed.problem], parsed.detail);
      const value = parsed.value;

      if (endpoint.kind === 'rest') {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) return denial('jsonrpc.invalid_request', 'body must be a JSON object');
        ctx.calls = [toolCall(0, undefined, endpoint.method as string, value)];
        return undefined;
      }
      if (endpoint.kind === 'call_tool') return readCallTool(ctx, value);

      if (!Array.isArray(value)) {
        const envelope = readEnvelope(value, 0);
        if (!envelope.ok) return denial('jsonrpc.invalid_request', envelope.detail);
        const respelled = respelledToolMember(envelope.call);
        if (respelled !== undefined) return denial('jsonrpc.invalid_request', respelled);
        ctx.calls = [envelope.call];
        return undefined;
      }
      ctx.batch = true;
      if (value.length === 0) return denial('jsonrpc.invalid_request', 'empty batch');
      if (value.length > maxBatch) return denial('jsonrpc.batch_too_large', `at most ${maxBatch} calls per batch`);
      const calls: RpcCall[] = [];
      for (let index = 0; index < value.length; index++) {
        const envelope = readEnvelope(value[index], index);
        const problem = envelope.ok ? respelledToolMember(envelope.call) : envelope.detail;
        if (problem !== undefined || !envelope.ok) return denial('jsonrpc.invalid_request', `batch element ${index}: ${problem}`, { data: { element: index } });
        calls.push(envelope.call);
      }
      ctx.calls = calls;
      return undefined;
    },
  };
}

function readCallTool(ctx: RequestContext, value: unknown): Verdict {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return denial('jsonrpc.invalid_request', 'body must be {"tool", "arguments"}');
  const { tool, arguments: args, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest)[0];
  if (extra !== undefined) return denial('jsonrpc.invalid_request', `unexpected member '${extra.slice(0, 64)}'`);
  if (!isToolName(tool)) return denial('jsonrpc.invalid_request', TOOL_NAME_RULE);
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return denial('params.invalid', 'arguments must be an object');
  ctx.calls = [toolCall(0, undefined, 'tools/call', { name: tool, arguments: args ?? {} })];
  return undefined;
}

/** The members of tools/call params the sidecar reads (the tool) or checks (its arguments, per tool). */
const TOOL_MEMBERS = new Set(['name', 'arguments', '_meta']);

/**
 * Why a tools/call's params are ambiguous: a second spelling of `name`, `arguments` or `_meta`
 * (`Name`, `ARGUMENTS`, `argumentſ` with U+017F). The sidecar authorises `name` and checks
 * `arguments`; an MCP server on Go's encoding/json (mcp-go) matches keys case-insensitively, with
 * Unicode folding (ſ is s, K U+212A is k), and keeps the last match, so it would run the tool
 * and the arguments the respelled member names. Refused whatever the method's params schema says.
 */
function respelledToolMember(call: RpcCall): string | undefined {
  const params = call.params;
  if (call.method !== 'tools/call' || typeof params !== 'object' || params === null || Array.isArray(params)) return undefined;
  for (const key in params) {
    if (TOOL_MEMBERS.has(key)) continue;
    // toLowerCase maps K (U+212A) to k; ſ (U+017F) is lower case already.
    if (TOOL_MEMBERS.has(key.toLowerCase().replaceAll('\u017f', 's'))) return `tools/call params member '${key.slice(0, 64)}' is another spelling of one the sidecar reads`;
  }
  return undefined;
}
