import { createParser } from 'eventsource-parser';
import type { RequestContext } from './context.js';
import { visibleTools } from './policy/decide.js';

/** A tools/list answer must be cut down to what the caller's roles may call (none, where the policy names no tool). */
export function wantsToolsFilter(ctx: RequestContext): boolean {
  return ctx.calls.some((call) => call.method === 'tools/list');
}

/** A filtered answer and the media type it is written in. */
export interface FilteredAnswer {
  readonly body: Buffer;
  readonly contentType: string;
}

/**
 * Removes from a tools/list answer (single or batch, whatever its HTTP status) every tool the caller
 * may not call, so an MCP client never sees a tool it cannot use. The answer is JSON, or an SSE
 * stream of JSON-RPC messages (MCP Streamable HTTP: the SDK's servers answer so by default), each
 * event filtered. An answer that cannot be read (compressed, not JSON, an event whose data is not
 * JSON) is replaced by an internal error: failing closed means showing nothing.
 */
export function filterToolsList(ctx: RequestContext, body: Buffer, contentType: string | undefined, contentEncoding: string | undefined): FilteredAnswer {
  if (contentEncoding !== undefined && contentEncoding.trim().toLowerCase() !== 'identity') return UNREADABLE;
  const filterOne = messageFilter(ctx);
  const text = body.toString('utf8');
  if (mediaType(contentType) === 'text/event-stream') {
    const events = filterEvents(text, filterOne);
    return events === undefined ? UNREADABLE : { body: Buffer.from(events), contentType: 'text/event-stream' };
  }
  const answer = parseAnswer(text);
  return answer === undefined ? UNREADABLE : { body: Buffer.from(JSON.stringify(filterOne(answer))), contentType: 'application/json' };
}

/** The filter for one JSON-RPC message (or a batch of them) of this request's answer. */
function messageFilter(ctx: RequestContext): (message: unknown) => unknown {
  const visible = visibleTools(ctx.policy, ctx.principal?.roles ?? []);
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
  return filterOne;
}

/** The answer as JSON, or undefined when it is none. */
function parseAnswer(text: string): unknown {
  try {
    // A `__proto__` member is data to JSON.parse, but the prototype to a client that copies the
    // answer (Object.assign, a merge): a result hidden in one would reach it unfiltered. The
    // reviver also bounds the nesting (a RangeError past a few thousand levels, caught here) far
    // below what would overflow the stack writing the answer again, a 500 before.
    return JSON.parse(text, (key, value: unknown) => (key === '__proto__' ? undefined : value));
  } catch {
    return undefined;
  }
}

/**
 * The stream written anew with each event's data filtered, as one `data:` line. Kept: each event's
 * `id` and `event`, events with no data, and `retry`. Dropped: comments, fields SSE does not
 * define, and an event the stream ended before closing (a client drops it too). Undefined when an
 * event's data is not JSON.
 */
function filterEvents(text: string, filterOne: (message: unknown) => unknown): string | undefined {
  let out = '';
  let unreadable = false;
  const parser = createParser({
    onEvent(event) {
      if (event.id !== undefined) out += `id: ${event.id}\n`;
      if (event.event !== undefined) out += `event: ${event.event}\n`;
      // No data: a priming event (an id to resume from, the SDK's servers send one first).
      if (event.data === '') {
        out += 'data: \n\n';
        return;
      }
      const message = parseAnswer(event.data);
      if (message === undefined) unreadable = true;
      out += `data: ${JSON.stringify(filterOne(message))}\n\n`;
    },
    onRetry(interval) {
      out += `retry: ${interval}\n\n`;
    },
  });
  parser.feed(text);
  return unreadable ? undefined : out;
}

/** `text/event-stream; charset=utf-8` → `text/event-stream`. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

const UNREADABLE: FilteredAnswer = {
  body: Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'internal error' } })),
  contentType: 'application/json',
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
