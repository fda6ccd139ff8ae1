import type { RequestContext } from './context.js';
import { visibleTools } from './policy/decide.js';

/** A tools/list answer must be cut down to what the caller's roles may call (none, where the policy names no tool). */
export function wantsToolsFilter(ctx: RequestContext): boolean {
  return ctx.calls.some((call) => call.method === 'tools/list');
}

/**
 * Removes from a tools/list result (single or batch answer, whatever its HTTP status) every tool
 * the caller may not call, so an MCP client never sees a tool it cannot use. An answer that
 * cannot be read is replaced by an internal error: failing closed means showing nothing.
 */
export function filterToolsList(ctx: RequestContext, body: Buffer): Buffer {
  const visible = visibleTools(ctx.policy, ctx.principal?.roles ?? []);
  let answer: unknown;
  try {
    // A `__proto__` member is data to JSON.parse, but the prototype to a client that copies the
    // answer (Object.assign, a merge): a result hidden in one would reach it unfiltered. The
    // reviver also bounds the nesting (a RangeError past a few thousand levels, caught here) far
    // below what would overflow the stack writing the answer again, a 500 before.
    answer = JSON.parse(body.toString('utf8'), (key, value: unknown) => (key === '__proto__' ? undefined : value));
  } catch {
    return UNREADABLE;
  }
  // Left as they are: the answers to the request's other calls, found by id. Any other result (the
  // list's own, or one whose id no call has: the upstream's mistake) is read as a tools/list one.
  const otherIds = new Set(ctx.calls.filter((call) => call.method !== 'tools/list' && call.id !== undefined).map((call) => call.id));
  for (const call of ctx.calls) if (call.method === 'tools/list') otherIds.delete(call.id);
  const filterOne = (message: unknown): unknown => {
    // A batch within the batch is no answer, but a lenient client may read it as one.
    if (Array.isArray(message)) return message.map(filterOne);
    if (!isObject(message)) return message;
    if (otherIds.has(message.id as never) || !('result' in message)) return message;
    // A result that is not an object (null, a list, text) is no tools/list result: it becomes an
    // empty one rather than being passed on or read as one.
    const result = isObject(message.result) ? message.result : {};
    const tools = Array.isArray(result.tools) ? result.tools : [];
    const kept = tools.filter((tool: unknown) => isObject(tool) && visible.has(tool.name as string));
    return { ...message, result: { ...result, tools: kept } };
  };
  return Buffer.from(JSON.stringify(filterOne(answer)));
}

const UNREADABLE = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'internal error' } }));

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
