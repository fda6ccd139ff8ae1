import type { RpcCall } from '../context.js';
import { denial, type Denial } from '../denials.js';
import { isToolName, readEnvelope, TOOL_NAME_RULE, toolCall } from '../jsonrpc/envelope.js';
import { parseStrictJson } from '../jsonrpc/strict-json.js';
import type { EgressTarget } from '../policy/model.js';

// MCP protocol messages a client needs before and around tool calls.
const MCP_PROTOCOL_METHODS = new Set(['initialize', 'notifications/initialized', 'ping', 'tools/list']);

/**
 * Which calls an outbound body makes, and whether this service may make them: a target method
 * must be listed under the target's methods, a tool under its tools. Decided before anything
 * leaves the task.
 */
export function egressCalls(target: EgressTarget, path: string, body: Buffer, limits: { readonly maxDepth: number; readonly maxBatch: number }): { calls: RpcCall[]; refusal?: Denial } | Denial {
  if (!target.paths.has(path)) return denial('authz.egress_denied', `${target.name} ${path} is not an allowed endpoint`);
  const parsed = parseStrictJson(body, limits.maxDepth);
  if (!parsed.ok) return denial('jsonrpc.parse_error', parsed.detail);
  const calls: RpcCall[] = [];
  if (path === '/call_tool') {
    const { tool, arguments: args } = (parsed.value ?? {}) as { tool?: unknown; arguments?: unknown };
    // Bounded as inbound: the name goes into the refusal and the audit line.
    if (!isToolName(tool)) return denial('jsonrpc.invalid_request', TOOL_NAME_RULE);
    calls.push(toolCall(0, undefined, 'tools/call', { name: tool, arguments: args }));
  } else {
    const items = Array.isArray(parsed.value) ? parsed.value : [parsed.value];
    // JSON-RPC 2.0 §6: an empty batch is an invalid request; the target would refuse it anyway,
    // so it must not leave the task with our token and a fresh proof.
    if (items.length === 0) return denial('jsonrpc.invalid_request', 'empty batch');
    // As inbound: a batch the target would refuse as too long does not leave the task either.
    if (items.length > limits.maxBatch) return denial('jsonrpc.batch_too_large', `at most ${limits.maxBatch} calls per batch`);
    for (let index = 0; index < items.length; index++) {
      const envelope = readEnvelope(items[index], index);
      if (!envelope.ok) return denial('jsonrpc.invalid_request', envelope.detail);
      calls.push(envelope.call);
    }
  }
  for (const call of calls) {
    const allowed = call.method === 'tools/call'
      ? call.tool !== undefined && target.tools.has(call.tool)
      : target.methods.has(call.method) || (target.tools.size > 0 && MCP_PROTOCOL_METHODS.has(call.method));
    // The calls were read: the refusal answers with the call's id and names its method, as inbound.
    if (!allowed) return { calls, refusal: denial('authz.egress_denied', `${target.name}: ${call.tool ?? call.method}`) };
  }
  return { calls };
}
