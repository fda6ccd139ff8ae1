import type { RequestContext } from './context.js';
import { visibleTools } from './policy/decide.js';

/** A tools/list answer must be cut down to what the caller's roles may call. */
export function wantsToolsFilter(ctx: RequestContext): boolean {
  return ctx.policy.tools.size > 0 && ctx.calls.some((call) => call.method === 'tools/list');
}

/**
 * Removes from a tools/list result (single or batch answer) every tool the caller may not call,
 * so an MCP client never sees a tool it cannot use. An answer that cannot be read is replaced by
 * an empty list: failing closed means showing nothing.
 */
export function filterToolsList(ctx: RequestContext, body: Buffer): Buffer {
  const visible = visibleTools(ctx.policy, ctx.principal?.roles ?? []);
  let answer: unknown;
  try {
    answer = JSON.parse(body.toString('utf8'));
  } catch {
    return Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'internal error' } }));
  }
  const listIds = new Set(ctx.calls.filter((call) => call.method === 'tools/list').map((call) => call.id));
  const filterOne = (message: unknown): unknown => {
    if (typeof message !== 'object' || message === null) return message;
    const record = message as { id?: unknown; result?: { tools?: unknown } };
    if (!listIds.has(record.id as never) || record.result === undefined) return message;
    const tools = Array.isArray(record.result.tools) ? record.result.tools : [];
    const kept = tools.filter((tool: unknown) => typeof tool === 'object' && tool !== null && visible.has((tool as { name?: unknown }).name as string));
    return { ...record, result: { ...record.result, tools: kept } };
  };
  const filtered = Array.isArray(answer) ? answer.map(filterOne) : filterOne(answer);
  return Buffer.from(JSON.stringify(filtered));
}
