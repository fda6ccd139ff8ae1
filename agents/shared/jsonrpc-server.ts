import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { callerFrom, type Caller } from './caller.js';
import type { AgentMetrics } from './metrics.js';
import { AGENT_ERRORS, AgentError, isAgentError, toRpcError } from './rpc-errors.js';
import { describeParamsErrors, type ParamsValidators } from './params.js';
import { withTrace } from './trace.js';

/** A method handler: params already match the method's schema. */
export type MethodHandler = (params: Record<string, unknown>, caller: Caller) => Promise<unknown>;

/** Options of {@link startJsonRpcServer}. */
export interface JsonRpcServerOptions {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly handlers: Readonly<Record<string, MethodHandler>>;
  readonly validators: ParamsValidators;
  /** The agent card for a request (its `url` may depend on the Host the request came in by). */
  readonly card: (req: IncomingMessage) => Record<string, unknown>;
  readonly health: () => Record<string, unknown>;
  readonly logger: Logger;
  /** Counted per call and served at `GET /metrics`. */
  readonly metrics: AgentMetrics;
  /** Largest request body; the sidecar's own limit is lower for every shipped service. */
  readonly maxBodyBytes?: number;
  /** Most calls in one batch (default {@link DEFAULT_MAX_BATCH}); a longer batch is refused whole. */
  readonly maxBatch?: number;
}

/** A listening JSON-RPC server. */
export interface JsonRpcServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

type RpcId = string | number | null;
interface RpcResponse { jsonrpc: '2.0'; id: RpcId; result?: unknown; error?: ReturnType<typeof toRpcError> }

const DEFAULT_MAX_BODY = 16 * 1024 * 1024;

/**
 * Most calls in one batch, unless told otherwise: the sidecar's default `limits.max_batch`
 * (proxy/policy/schemas/service.schema.json), which no shipped agent policy changes. The agent runs
 * a batch's calls one after another, so without a bound one request of thousands of calls (from
 * anything that reaches it past its sidecar) would hold it for all of them.
 */
export const DEFAULT_MAX_BATCH = 20;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function rpcFailure(id: RpcId, error: AgentError): RpcResponse {
  return { jsonrpc: '2.0', id, error: toRpcError(error) };
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new AgentError('invalid_request', `body is over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A minimal JSON-RPC 2.0 server for one agent: `POST /message` (single or batch), `GET /health`,
 * `GET /.well-known/agent-card.json`, `GET /card` and `GET /metrics` (for its sidecar's
 * `upstream_metrics_path`; the sidecar serves none of it on its public port). Security is the sidecar's job; this only
 * parses, checks params against the policy's schema, dispatches and answers.
 */
export async function startJsonRpcServer(opts: JsonRpcServerOptions): Promise<JsonRpcServer> {
  const { logger, handlers, validators, metrics } = opts;
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;

  const invoke = async (message: unknown, caller: Caller): Promise<RpcResponse | undefined> => {
    if (!isRecord(message) || message['jsonrpc'] !== '2.0' || typeof message['method'] !== 'string') {
      return rpcFailure(null, new AgentError('invalid_request', 'not a JSON-RPC 2.0 request'));
    }
    const rawId = message['id'];
    const isNotification = !Object.hasOwn(message, 'id');
    const id: RpcId = typeof rawId === 'string' || typeof rawId === 'number' ? rawId : null;
    const method = message['method'];
    const started = performance.now();
    let outcome = 'success';
    try {
      const handler = Object.hasOwn(handlers, method) ? handlers[method] : undefined;
      const validate = validators.get(method);
      if (handler === undefined || validate === undefined) throw new AgentError('method_not_found', `method '${method}' is not served by ${opts.name}`);
      const params = message['params'] ?? {};
      if (!validate(params) || !isRecord(params)) {
        throw new AgentError('invalid_params', `invalid params for ${method}`, { errors: describeParamsErrors(validate) });
      }
      const result = await withTrace(caller.trace, () => handler(params, caller));
      return isNotification ? undefined : { jsonrpc: '2.0', id, result };
    } catch (error) {
      outcome = isAgentError(error) ? error.code : 'internal';
      if (!isAgentError(error)) logger.error({ event_type: 'agent_internal_error', method, request_id: caller.requestId, trace_id: caller.trace?.traceId, err: error }, 'method failed');
      return isNotification ? undefined : { jsonrpc: '2.0', id, error: toRpcError(error) };
    } finally {
      const seconds = (performance.now() - started) / 1000;
      // A method the agent does not serve is counted as `unknown`: its name is the caller's.
      const label = validators.has(method) ? method : 'unknown';
      metrics.calls.inc({ method: label, outcome });
      metrics.callDuration.observe({ method: label }, seconds);
      logger.info({
        event_type: 'agent_call', method, outcome, duration_ms: Math.round(seconds * 1000),
        request_id: caller.requestId, trace_id: caller.trace?.traceId, client_id: caller.clientId,
      }, 'call');
    }
  };

  const message = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') return send(res, 415, rpcFailure(null, new AgentError('invalid_request', 'content-type must be application/json')));
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req, maxBody));
    } catch (error) {
      const refusal = isAgentError(error) ? error : new AgentError('parse_error', 'body is not valid JSON');
      return send(res, refusal.code === 'parse_error' ? 400 : 413, rpcFailure(null, refusal));
    }
    const caller = callerFrom(req.headers);
    if (Array.isArray(body)) {
      if (body.length === 0) return send(res, 400, rpcFailure(null, new AgentError('invalid_request', 'empty batch')));
      // Refused whole, before any call runs, as the sidecar does (jsonrpc.batch_too_large).
      if (body.length > maxBatch) {
        return send(res, 400, rpcFailure(null, new AgentError('invalid_request', `batch of ${body.length} calls: at most ${maxBatch} calls per batch`, { max_batch: maxBatch })));
      }
      // Sequentially: a batch is small and its calls may depend on each other's effects.
      const answers: RpcResponse[] = [];
      for (const item of body) {
        const answer = await invoke(item, caller);
        if (answer) answers.push(answer);
      }
      return answers.length === 0 ? void res.writeHead(204).end() : send(res, 200, answers);
    }
    const answer = await invoke(body, caller);
    if (answer === undefined) return void res.writeHead(204).end();
    send(res, 200, answer);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const route = `${req.method ?? ''} ${path ?? ''}`;
    const done = (promise: Promise<void>): void => {
      promise.catch((error: unknown) => {
        logger.error({ event_type: 'agent_http_error', err: error }, 'request failed');
        if (!res.headersSent) send(res, 500, rpcFailure(null, new AgentError('internal', 'internal error')));
        else res.destroy();
      });
    };
    switch (route) {
      case 'POST /message':
        return done(message(req, res));
      case 'GET /health':
        return send(res, 200, { status: 'ok', agent: opts.name, ...opts.health() });
      case 'GET /.well-known/agent-card.json':
      case 'GET /card':
        return send(res, 200, opts.card(req));
      case 'GET /metrics':
        return done(metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
          res.end(text);
        }));
      default:
        return send(res, 404, { error: { code: AGENT_ERRORS.not_found.rpcCode, message: 'no such route' } });
    }
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 300_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  return {
    url,
    port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // In-flight calls get a moment to answer; then their sockets go too.
      setTimeout(() => server.closeAllConnections(), 5_000).unref();
    }),
  };
}
