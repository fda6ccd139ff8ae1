import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ClientClosed, TOOL_ERRORS, ToolError, objectCutShort, toWireError } from './errors.js';
import { handleMcpRequest } from './mcp-endpoint.js';
import type { GatewayMetrics } from './metrics.js';
import { parseTraceparent } from '../proxy/http/trace-context.js';
import type { BreakerStateName } from './resilience.js';
import { endAnswer, sendJsonStreaming } from './streamed-text.js';
import type { CallerIdentity, ToolRunner } from './tool-runner.js';

/** What the routes need from the gateway. */
export interface RouteDeps {
  runner: ToolRunner;
  registry: Registry;
  logger: Logger;
  maxBodyBytes: number;
  clientClosed: GatewayMetrics['clientClosed'];
  /** True once the stopping gateway closes the connections left after its drain: no client leaving. */
  cutting: () => boolean;
  backends: () => Record<string, { kind: string; breaker: BreakerStateName }>;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A tool error's answer: its status and wire form, and `Retry-After` when it says when to ask again. */
function errorAnswer(error: ToolError): [number, Record<string, unknown>, Record<string, string>] {
  const retryAfter = error.details.retry_after_seconds;
  return [TOOL_ERRORS[error.code].status, { success: false, error: toWireError(error) }, retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) }];
}

function sendError(res: ServerResponse, error: ToolError): void {
  sendJson(res, ...errorAnswer(error));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  if (typeof v !== 'string' || v.length === 0) return undefined;
  // Audit values only: bounded and free of control characters whatever reached us.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return v.replace(/[\u0000-\u001f\u007f]/gu, '').slice(0, 256);
}

/** The identity the sidecar asserted in x-ca-a2a-* headers. */
export function callerFrom(req: IncomingMessage): CallerIdentity {
  const roles = header(req, 'x-ca-a2a-roles');
  return {
    subject: header(req, 'x-ca-a2a-subject'),
    client_id: header(req, 'x-ca-a2a-client-id'),
    roles: roles ? roles.split(',').map((r) => r.trim()).filter(Boolean).slice(0, 32) : undefined,
    request_id: header(req, 'x-ca-a2a-request-id'),
    trace_id: parseTraceparent(req.headers.traceparent)?.traceId,
  };
}

/**
 * Reads a body of at most `limit` bytes. One that declares more (Content-Length) is refused
 * before any of it is read. What is held grows with the bytes that arrived, never with the length
 * declared: a buffer made at that size up front would let slow clients declaring the cap each
 * take it while sending nothing. The request stream fails only when its connection ends before
 * the body does: {@link ClientClosed}.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new ToolError('too_large', `body is over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) break;
      chunks.push(chunk as Buffer);
    }
  } catch {
    throw new ClientClosed('request');
  }
  if (size > limit) throw new ToolError('too_large', `body is over ${limit} bytes`);
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/**
 * Reads and parses a JSON body up to `limit` bytes; a ToolError says why it could not. A body
 * refused unread closes the connection once the refusal is sent (RFC 9112 §9.6): the rest of it
 * may still be on its way, and on a connection kept alive the server would take the client's
 * next request as more of the refused body, or (had it stopped reading) the body as a request.
 */
async function readJson(req: IncomingMessage, res: ServerResponse, limit: number): Promise<unknown> {
  let body: Buffer;
  try {
    body = await readBody(req, limit);
  } catch (err) {
    res.setHeader('connection', 'close');
    throw err;
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new ToolError('invalid_request', 'body is not valid JSON');
  }
}

function isJsonContent(req: IncomingMessage): boolean {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() === 'application/json';
}

async function callTool(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  if (!isJsonContent(req)) throw new ToolError('invalid_request', 'content-type must be application/json');
  const body = await readJson(req, res, deps.maxBodyBytes);
  if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof (body as { tool?: unknown }).tool !== 'string') {
    throw new ToolError('invalid_request', 'body must be {"tool": string, "arguments": object}');
  }
  const { tool, arguments: args } = body as { tool: string; arguments?: unknown };
  const caller = callerFrom(req);
  const outcome = await deps.runner.call(tool, args ?? {}, caller, 'rest');
  try {
    await (outcome.ok ? sendJsonStreaming(res, 200, { success: true, ...outcome.result }) : endAnswer(res, ...errorAnswer(outcome.error)));
  } catch (err) {
    if (err instanceof ClientClosed) return clientClosed(req, res, deps, 'rest', err.stage, tool);
    if (!res.headersSent) {
      // The result could not be written as JSON at all (a jsonb value nested past what
      // JSON.stringify can walk): an error answer, never a request left without one.
      const error = new ToolError('internal', 'internal error');
      deps.runner.undelivered(tool, caller, 'rest', error, err);
      return sendError(res, error);
    }
    // The bucket failed midway: the client sees a truncated body. Counted and audited as the
    // same failure is over MCP, where it answers a failed call.
    deps.runner.undelivered(tool, caller, 'rest', objectCutShort(), err);
  }
}

async function mcp(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  let body: unknown;
  try {
    body = await readJson(req, res, deps.maxBodyBytes);
  } catch (err) {
    if (err instanceof ClientClosed) throw err;
    const tooLarge = (err as ToolError).code === 'too_large';
    const error = tooLarge ? { code: -32600, message: 'request too large' } : { code: -32700, message: 'parse error' };
    return sendJson(res, tooLarge ? 413 : 400, { jsonrpc: '2.0', id: null, error });
  }
  await handleMcpRequest(req, res, body, deps.runner, callerFrom(req), () => clientClosed(req, res, deps, 'mcp', 'answer'));
}

/**
 * A client that left before its request or its answer was whole: nothing to answer, and no
 * failure of the gateway (an error line would let any client write them), so a metric and an
 * info line without stack. Not once the stopping gateway closes the connections its drain
 * left: those are its own doing.
 */
function clientClosed(req: IncomingMessage, res: ServerResponse, deps: RouteDeps, transport: 'mcp' | 'rest', stage: ClientClosed['stage'], tool?: string): void {
  res.destroy();
  if (deps.cutting()) return;
  deps.clientClosed.inc({ transport, stage });
  const caller = callerFrom(req);
  deps.logger.info(
    { event_type: 'mcp_client_closed', transport, stage, ...(tool === undefined ? {} : { tool }), request_id: caller.request_id, trace_id: caller.trace_id },
    'client closed its connection',
  );
}

/** Dispatches one HTTP request to /mcp, /call_tool, /health or /metrics. */
export async function route(req: IncomingMessage, res: ServerResponse, deps: RouteDeps): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  try {
    if (path === '/mcp') {
      // Stateless: no SSE stream to GET and no session to DELETE.
      if (req.method !== 'POST') {
        return sendJson(res, 405, { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'method not allowed' } }, { allow: 'POST' });
      }
      return await mcp(req, res, deps);
    }
    if (path === '/call_tool' && req.method === 'POST') return await callTool(req, res, deps);
    if (path === '/health' && req.method === 'GET') {
      const backends = deps.backends();
      const degraded = Object.values(backends).some((b) => b.breaker !== 'closed');
      return sendJson(res, 200, { status: degraded ? 'degraded' : 'ok', backends });
    }
    if (path === '/metrics' && req.method === 'GET') {
      const text = await deps.registry.metrics();
      res.writeHead(200, { 'content-type': deps.registry.contentType });
      return void res.end(text);
    }
    sendJson(res, 404, { success: false, error: { code: 'not_found', message: 'no such route' } });
  } catch (err) {
    if (err instanceof ClientClosed) return clientClosed(req, res, deps, path === '/mcp' ? 'mcp' : 'rest', err.stage);
    const known = err instanceof Error && err.name === 'ToolError' ? (err as ToolError) : undefined;
    if (!known) deps.logger.error({ event_type: 'mcp_http_error', err }, 'request failed');
    const error = known ?? new ToolError('internal', 'internal error');
    if (!res.headersSent) sendError(res, error);
    else res.destroy();
  }
}
