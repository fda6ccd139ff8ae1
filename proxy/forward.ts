import type { ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { RequestContext } from './context.js';
import { denial, type Denial } from './denials.js';
import type { LimitsPolicy } from './policy/model.js';
import { filterToolsList, wantsToolsFilter } from './mcp-filter.js';

// RFC 9110 §7.6.1 hop-by-hop fields, plus what the sidecar owns or must never pass on.
const DROPPED_REQUEST_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'authorization', 'dpop', 'x-original-url', 'x-rewrite-url',
]);
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

/**
 * The way out to the agent: one undici Pool per upstream, created once, keep-alive, explicit
 * timeouts. Forwards the normalised path, the verified identity as x-ca-a2a-* headers (any the
 * client sent are dropped), streams the answer back.
 */
export class Forwarder {
  readonly #pool: Pool;
  readonly #limits: LimitsPolicy;

  constructor(upstream: string, limits: LimitsPolicy) {
    this.#limits = limits;
    this.#pool = new Pool(new URL(upstream).origin, {
      connections: 256,
      keepAliveTimeout: 30_000,
      connectTimeout: limits.upstreamConnectTimeoutMs,
      headersTimeout: limits.upstreamTimeoutMs,
      bodyTimeout: limits.upstreamTimeoutMs,
    });
  }

  /** Forwards; resolves to a Denial when the upstream failed before anything was sent back. */
  async forward(ctx: RequestContext, res: ServerResponse, onHeaders: () => void): Promise<Denial | undefined> {
    const options = {
      method: (ctx.req.method ?? 'GET') as 'GET' | 'HEAD' | 'POST',
      path: ctx.path + ctx.query,
      headers: upstreamHeaders(ctx),
      body: ctx.body,
      headersTimeout: this.#limits.upstreamTimeoutMs,
    };
    if (wantsToolsFilter(ctx)) return this.#forwardFiltered(ctx, res, options, onHeaders);
    let started = false;
    try {
      // undici's stream(): the response body is written straight into `res`, no intermediate
      // Readable and no stream.pipeline (whose AbortController costs ~5 % per request).
      await this.#pool.stream(options, ({ statusCode, headers }) => {
        started = true;
        onHeaders();
        res.writeHead(statusCode, responseHeaders(ctx, headers));
        return res;
      });
    } catch (error) {
      if (!started) return upstreamDenial(error);
      // The upstream or the client went away mid-body: headers are sent, all we can do is close.
      res.destroy();
    }
    return undefined;
  }

  async #forwardFiltered(ctx: RequestContext, res: ServerResponse, options: Dispatcher.RequestOptions, onHeaders: () => void): Promise<Denial | undefined> {
    let response;
    let body: Buffer;
    try {
      response = await this.#pool.request(options);
      body = Buffer.from(await response.body.arrayBuffer());
    } catch (error) {
      return upstreamDenial(error);
    }
    onHeaders();
    const headers = responseHeaders(ctx, response.headers);
    const filtered = response.statusCode === 200 ? filterToolsList(ctx, body) : body;
    delete headers['content-length'];
    res.writeHead(response.statusCode, { ...headers, 'content-length': filtered.length });
    res.end(filtered);
    return undefined;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

function responseHeaders(ctx: RequestContext, upstream: IncomingHttpHeaders): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name)) headers[name] = value;
  }
  Object.assign(headers, ctx.responseHeaders);
  headers['x-ca-a2a-request-id'] = ctx.requestId;
  return headers;
}

function upstreamHeaders(ctx: RequestContext): Record<string, string> {
  const headers: Record<string, string> = {};
  const connectionListed = new Set((ctx.req.headers.connection ?? '').toLowerCase().split(',').map((name) => name.trim()));
  const raw = ctx.req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (DROPPED_REQUEST_HEADERS.has(name) || connectionListed.has(name) || name.startsWith('x-ca-a2a-')) continue;
    const value = raw[i + 1] as string;
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  headers['x-ca-a2a-request-id'] = ctx.requestId;
  const principal = ctx.principal;
  if (principal) {
    headers['x-ca-a2a-subject'] = principal.subject;
    headers['x-ca-a2a-client-id'] = principal.clientId;
    headers['x-ca-a2a-roles'] = principal.roles.join(',');
  }
  return headers;
}

/** The one mapping from undici and socket error codes to 502 / 504 (matched on .code). */
export function upstreamDenial(error: unknown): Denial {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      return denial('upstream.timeout');
    default:
      // ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, UND_ERR_CLOSED, EHOSTUNREACH, …
      return denial('upstream.unavailable');
  }
}
