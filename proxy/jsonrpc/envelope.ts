import type { JsonRpcId, RpcCall } from '../context.js';

/** Why an element is not a JSON-RPC 2.0 request (JSON-RPC 2.0 §4). */
export type EnvelopeResult = { readonly ok: true; readonly call: RpcCall } | { readonly ok: false; readonly detail: string };

const ALLOWED_MEMBERS = new Set(['jsonrpc', 'method', 'params', 'id']);

/**
 * Longest method or tool name read from a request. A name is echoed into refusals and written
 * to audit lines, so a longer one is refused rather than copied there (a whole body's worth).
 */
export const MAX_NAME_LENGTH = 128;

/** Whether a `/call_tool` body's `tool` can name a tool; refused otherwise with TOOL_NAME_RULE. */
export function isToolName(tool: unknown): tool is string {
  return typeof tool === 'string' && tool.length > 0 && tool.length <= MAX_NAME_LENGTH;
}
export const TOOL_NAME_RULE = `tool must be a non-empty string of at most ${MAX_NAME_LENGTH} characters`;

export function readEnvelope(value: unknown, index: number): EnvelopeResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, detail: 'request must be an object' };
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!ALLOWED_MEMBERS.has(key)) return { ok: false, detail: `unexpected member '${key.slice(0, 64)}'` };
  if (record.jsonrpc !== '2.0') return { ok: false, detail: "jsonrpc must be exactly '2.0'" };
  const method = record.method;
  if (typeof method !== 'string' || method.length === 0 || method.length > MAX_NAME_LENGTH) return { ok: false, detail: `method must be a non-empty string of at most ${MAX_NAME_LENGTH} characters` };
  // §4: names starting with "rpc." are reserved for the protocol itself.
  if (method.startsWith('rpc.')) return { ok: false, detail: "methods starting with 'rpc.' are reserved" };
  const params = record.params;
  if (params !== undefined && (typeof params !== 'object' || params === null)) return { ok: false, detail: 'params must be an object or an array' };
  const id = record.id;
  if (id !== undefined && id !== null && typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) {
    return { ok: false, detail: 'id must be a string, a number or null' };
  }
  const call = toolCall(index, id as JsonRpcId | undefined, method, params);
  if (call.tool !== undefined && call.tool.length > MAX_NAME_LENGTH) return { ok: false, detail: `a tool name is at most ${MAX_NAME_LENGTH} characters` };
  return { ok: true, call };
}

/** Builds a call, lifting the tool name and arguments out of MCP tools/call params. */
export function toolCall(index: number, id: JsonRpcId | undefined, method: string, params: unknown): RpcCall {
  let tool: string | undefined;
  let toolArguments: unknown;
  if (method === 'tools/call' && typeof params === 'object' && params !== null && !Array.isArray(params)) {
    const record = params as Record<string, unknown>;
    if (typeof record.name === 'string') tool = record.name;
    toolArguments = record.arguments;
  }
  return { index, id, method, params, tool, toolArguments };
}
