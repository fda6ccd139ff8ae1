import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { toWireError } from './errors.js';
import { materialise } from './streamed-text.js';
import type { CallerIdentity, ToolRunner } from './tool-runner.js';

/** Server name and version announced in the MCP initialize result. */
export const SERVER_INFO = { name: 'ca-a2a-mcp-gateway', version: '0.1.0' } as const;

/**
 * Serves one `POST /mcp` request, statelessly: a fresh SDK Server and transport per request
 * (the SDK's stateless mode requires it), no session id, JSON responses rather than SSE so the
 * sidecar in front can filter a tools/list result by rewriting its JSON body. Stateless suits a
 * gateway behind a per-request-authenticating sidecar: any replica can answer any request and
 * there is no session to hijack or expire.
 */
export async function handleMcpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
  runner: ToolRunner,
  caller: CallerIdentity,
): Promise<void> {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} } });
  // The definitions (built once) are name, description and a JSON Schema of type "object": a Tool.
  const tools = runner.definitions as readonly Tool[];

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [...tools] }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const outcome = await runner.call(request.params.name, request.params.arguments ?? {}, caller, 'mcp');
    if (outcome.ok) {
      // The SDK frames whole messages: a streamed field (an object's bytes) is read in here.
      const result = { success: true, ...(await materialise(outcome.result as Record<string, unknown>)) };
      return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
    }
    // MCP spec (tools, "Error Handling"): an unknown tool is a protocol error, a failed call is a result.
    if (outcome.error.code === 'unknown_tool') throw new McpError(ErrorCode.InvalidParams, outcome.error.message);
    const result = { success: false, error: toWireError(outcome.error) };
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result, isError: true };
  });

  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}
