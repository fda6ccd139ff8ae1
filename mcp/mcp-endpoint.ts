import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolRequest, CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { ToolError, objectCutShort, toWireError } from './errors.js';
import { StreamedText } from './streamed-text.js';
import type { CallerIdentity, ToolRunner } from './tool-runner.js';

/** Server name and version announced in the MCP initialize result. */
export const SERVER_INFO = { name: 'ca-a2a-mcp-gateway', version: '0.1.0' } as const;

/**
 * Characters of result text one `POST /mcp` answers in all, across a batch: room for one object
 * at the default 10 MiB cap as base64 (14 M characters) and the smaller results around it.
 */
export const MCP_RESULT_BUDGET = 16 * 1024 * 1024;

/**
 * The share of {@link MCP_RESULT_BUDGET} left to one request. The SDK frames the whole answer as
 * one string, so without it a batch of object reads grows past V8's string limit and the answer
 * is never sent. Objects are read one call at a time, so the first calls get theirs whole and
 * a call past the budget stops reading at its first chunk.
 */
class ResultBudget {
  #left = MCP_RESULT_BUDGET;
  #turn: Promise<unknown> = Promise.resolve();

  /** Takes `chars` from what is left; false, taking nothing, when they do not fit. */
  take(chars: number): boolean {
    if (chars > this.#left) return false;
    this.#left -= chars;
    return true;
  }

  /** The stream's text, or undefined when it runs past the budget. */
  read(stream: Readable): Promise<string | undefined> {
    const reading = this.#turn.then(async () => {
      stream.setEncoding('utf8');
      const parts: string[] = [];
      for await (const part of stream as AsyncIterable<string>) {
        // Leaving the loop destroys the stream: nothing more is read from the bucket.
        if (!this.take(part.length)) return undefined;
        parts.push(part);
      }
      return parts.join('');
    });
    this.#turn = reading.catch(() => undefined);
    return reading;
  }
}

function failure(error: ToolError): CallToolResult {
  const result = { success: false, error: toWireError(error) };
  return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result, isError: true };
}

/**
 * A successful call as a tools/call result. A streamed field (an object's bytes) is read in here,
 * since the SDK frames whole messages, and sent once, in the JSON text of `content`: no tool
 * declares an outputSchema, so `structuredContent` is optional (MCP spec, tools, "Structured
 * Content") and repeating the object there would double the answer.
 */
async function success(
  result: Record<string, unknown>,
  budget: ResultBudget,
  refused: (error: ToolError, cause?: unknown) => void,
): Promise<CallToolResult> {
  const tooLarge = (): CallToolResult => {
    const error = new ToolError('too_large', `results of one MCP request are limited to ${MCP_RESULT_BUDGET} characters; read this object in a request of its own`);
    refused(error);
    return failure(error);
  };
  const streamed = Object.entries(result).find((entry): entry is [string, StreamedText] => entry[1] instanceof StreamedText);
  if (!streamed) {
    const answer = { success: true, ...result };
    let text: string;
    try {
      text = JSON.stringify(answer);
    } catch (cause) {
      // Nested past what JSON.stringify can walk (a jsonb value written around the gateway): a
      // failed call, not a JSON-RPC error carrying V8's own message.
      const error = new ToolError('internal', 'internal error');
      refused(error, cause);
      return failure(error);
    }
    return budget.take(text.length) ? { content: [{ type: 'text', text }], structuredContent: answer } : tooLarge();
  }
  const [name, field] = streamed;
  const envelope = JSON.stringify({ success: true, ...result, [name]: '' });
  if (!budget.take(envelope.length)) {
    field.stream.destroy();
    return tooLarge();
  }
  let value: string | undefined;
  try {
    value = await budget.read(field.stream);
  } catch (cause) {
    // The bucket failed or the object was shorter than its metadata: a failed call, not a
    // JSON-RPC error carrying the stream's own message.
    const error = objectCutShort();
    refused(error, cause);
    return failure(error);
  }
  if (value === undefined) return tooLarge();
  return { content: [{ type: 'text', text: JSON.stringify({ success: true, ...result, [name]: value }) }] };
}

/**
 * tools/call as registered: the method alone. The SDK parses a request with the schema a handler
 * is registered with before its own tools/call check (Server.setRequestHandler) runs, and answers
 * that parse's failure as -32603 internal error, so a malformed call (no name, arguments not an
 * object) read as the gateway's fault. Registered on the method only, the SDK's check refuses it as
 * -32602 invalid params (JSON-RPC 2.0 §5.1) naming the field, and the handler gets requests it passed.
 */
const TOOLS_CALL = CallToolRequestSchema.pick({ method: true }).loose();

/** A JSON-RPC request id, as the SDK hands it to a request handler. */
type RequestId = string | number;

/**
 * Takes the arguments object out of each `tools/call` request of the parsed body, by request id,
 * leaving `{}` in its place. The SDK holds the parsed body and its copies of each message until
 * the request is answered, so an argument it held (an upload's base64 text, 4/3 of the object on
 * the V8 heap) would stay there that long whatever the tool let go of. Only a plain object under
 * an id no other message of the body shares is taken: anything else the SDK judges as sent.
 */
function takeToolArguments(body: unknown): Map<RequestId, Record<string, unknown>> {
  const messages = (Array.isArray(body) ? body : [body]) as { method?: unknown; id?: unknown; params?: unknown }[];
  const ids = messages.map((m) => (typeof m === 'object' && m !== null ? m.id : undefined));
  const taken = new Map<RequestId, Record<string, unknown>>();
  for (const [i, message] of messages.entries()) {
    if (typeof message !== 'object' || message === null || message.method !== 'tools/call') continue;
    const id = ids[i];
    if ((typeof id !== 'string' && typeof id !== 'number') || ids.indexOf(id) !== ids.lastIndexOf(id)) continue;
    const params = message.params as { arguments?: unknown } | undefined;
    const args = typeof params === 'object' && params !== null ? params.arguments : undefined;
    if (typeof args !== 'object' || args === null || Array.isArray(args)) continue;
    taken.set(id, args as Record<string, unknown>);
    (params as { arguments: unknown }).arguments = {};
  }
  return taken;
}

/**
 * The body without its `notifications/cancelled`, when it is a batch that holds other messages.
 * The SDK answers nothing for a request that a cancellation in its batch names (in either order:
 * notifications are handled after the batch's requests have started), while the transport, which
 * answers in JSON, waits for an answer to every request: such a POST was never answered. A request
 * here lives only as long as its own POST (a fresh server each), so no other cancellation can name
 * one; the MCP spec lets a receiver ignore a cancellation of a request it cannot cancel.
 */
function withoutCancellations(body: unknown): unknown {
  if (!Array.isArray(body)) return body;
  const kept = body.filter((m) => !(typeof m === 'object' && m !== null && (m as { method?: unknown }).method === 'notifications/cancelled'));
  return kept.length > 0 ? kept : body;
}

/**
 * Serves one `POST /mcp` request, statelessly: a fresh SDK Server and transport per request
 * (the SDK's stateless mode requires it), no session id, JSON responses rather than SSE so the
 * sidecar in front can filter a tools/list result by rewriting its JSON body. Stateless suits a
 * gateway behind a per-request-authenticating sidecar: any replica can answer any request and
 * there is no session to hijack or expire. `onClientLeft` is called when the client leaves before
 * its answer was handed whole to its connection.
 */
export async function handleMcpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  parsed: unknown,
  runner: ToolRunner,
  caller: CallerIdentity,
  onClientLeft: () => void,
): Promise<void> {
  const body = withoutCancellations(parsed);
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} } });
  // The definitions (built once) are name, description and a JSON Schema of type "object": a Tool.
  const tools = runner.definitions as readonly Tool[];
  const budget = new ResultBudget();
  const toolArguments = takeToolArguments(body);

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [...tools] }));
  server.setRequestHandler(TOOLS_CALL, async (request, extra) => {
    // The SDK checked it against CallToolRequestSchema before calling this handler.
    const { params } = request as unknown as CallToolRequest;
    // Taken once: the tool's own parse of them, which it may let go of.
    const args = toolArguments.get(extra.requestId) ?? params.arguments ?? {};
    toolArguments.delete(extra.requestId);
    const outcome = await runner.call(params.name, args, caller, 'mcp');
    if (outcome.ok) {
      const name = params.name;
      return success(outcome.result as Record<string, unknown>, budget, (error, cause) => runner.undelivered(name, caller, 'mcp', error, cause));
    }
    // MCP spec (tools, "Error Handling"): an unknown tool is a protocol error, a failed call is a result.
    if (outcome.error.code === 'unknown_tool') throw new McpError(ErrorCode.InvalidParams, outcome.error.message);
    return failure(outcome.error);
  });

  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  // The SDK writes the answer: a connection closed before it was handed whole ('close' before
  // 'finish') is a client gone, the request's body having been read whole before this.
  let finished = false;
  res.once('finish', () => (finished = true));
  res.on('close', () => {
    if (!finished) onClientLeft();
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}
