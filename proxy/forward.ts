import type { ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { errors, Pool, type Dispatcher } from 'undici';
import type { RequestContext } from './context.js';
import { denial, type Denial } from './denials.js';
import type { LimitsPolicy } from './policy/model.js';
import { filterToolsList, wantsToolsFilter } from './mcp-filter.js';
import { traceHeaders } from './http/trace-context.js';
import { normaliseIp } from './http/cidr.js';
import { clientGone, ConnectionCalls, type UnderWay } from './http/connection-calls.js';

// RFC 9110 §7.6.1 hop-by-hop fields, plus what the sidecar owns or must never pass on.
const DROPPED_REQUEST_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'content-length', 'authorization', 'dpop', 'x-original-url', 'x-rewrite-url',
  // Expect: 100-continue is met by the sidecar (it reads the whole body before forwarding).
  'expect',
  // A method other than the one checked, to frameworks that honour them (Rails' Rack::MethodOverride
  // by default, Express's method-override), as X-Original-URL names another path.
  'x-http-method-override', 'x-http-method', 'x-method-override',
  // Set by the sidecar, continuing the caller's trace when it named a valid one.
  'traceparent', 'tracestate',
]);
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

/**
 * How long a connection to the agent is kept idle when the agent gives no Keep-Alive hint: below
 * the shortest idle timeout of common servers (gunicorn's 2 s; Node's 5 s, uvicorn's 5 s). A new
 * connection to an agent beside the sidecar costs far less than a lost request.
 */
const UPSTREAM_IDLE_MS = 1_000;

/**
 * The way out to the agent: one undici Pool per upstream, created once, keep-alive. Forwards the
 * normalised path, the verified identity as x-ca-a2a-* headers (any the client sent are dropped),
 * streams the answer back.
 *
 * The upstream timeouts are kept by each exchange with a Node timer, not by undici: its
 * per-request timers stay in its own timer list until its next half-second tick, so at thousands
 * of requests a second they outlived two young-generation collections and were moved to V8's old
 * space, about half of all the sidecar promoted per request.
 */
export class Forwarder {
  readonly #pool: Pool;
  /** The pool, for a filtered tools/list: its request too counts among those waiting until a connection takes it. */
  readonly #countedPool: Dispatcher;
  readonly #limits: LimitsPolicy;
  /**
   * Requests handed to the pool that no connection has taken yet, those answered 504 while they
   * waited included: undici cannot take one out of its queue, so it leaves only when a connection
   * takes it (and drops it at once). Bounded, so that a busy upstream costs a quick 503 instead of
   * a queue, each entry holding its body, that grows at the request rate.
   */
  #waiting = 0;
  readonly #maxWaiting: number;
  /** The calls under way per client connection, which its closing ends. */
  readonly #calls = new ConnectionCalls();

  constructor(upstream: string, limits: LimitsPolicy) {
    this.#limits = limits;
    // As Envoy's max_pending_requests (1024) to its 256 connections by default.
    this.#maxWaiting = 4 * limits.upstreamMaxConnections;
    this.#pool = new Pool(new URL(upstream).origin, {
      connections: limits.upstreamMaxConnections,
      // An idle connection is closed by the sidecar before the agent closes it: a request written
      // as the agent closes its end is lost (reset, answered 502), and it may not be sent again
      // (a POST that may have reached the agent). An agent that says how long it keeps one
      // (Keep-Alive: timeout=N, Node's servers) is believed, less 2 s, up to keepAliveMaxTimeout.
      keepAliveTimeout: UPSTREAM_IDLE_MS,
      keepAliveMaxTimeout: 30_000,
      connectTimeout: limits.upstreamConnectTimeoutMs,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.#countedPool = this.#pool.compose((dispatch) => (options, handler) => dispatch(options, new Waiting(handler, this.#taken)));
  }

  /** Forwards; resolves to a Denial when the upstream failed before anything was sent back. */
  forward(ctx: RequestContext, res: ServerResponse, onHeaders: () => void): Promise<Denial | undefined> {
    // The list is read as JSON to filter it: asked for uncompressed, whatever the client accepts
    // (fetch accepts gzip, and compression middleware takes it up).
    const filtered = wantsToolsFilter(ctx);
    const options = {
      // A HEAD goes as a GET whose body is read for no one (see Exchange): undici closes the
      // connection after every HEAD, so each one, unauthenticated on a public route, opened a new
      // connection to the agent. nginx's proxy_cache_convert_head does the same.
      method: (ctx.req.method === 'HEAD' ? 'GET' : ctx.req.method ?? 'GET') as 'GET' | 'POST',
      path: ctx.path + ctx.query,
      headers: upstreamHeaders(ctx, filtered),
      body: ctx.body,
    };
    // Gone while the layers checked its call (the issuer's keys or a store slow to answer): the
    // call is not sent for no one, as one whose client leaves while it waits for a connection.
    // The socket, not the response: Node marks only the answer under way destroyed, not one
    // queued behind it for a pipelined request. A client that sent its FIN has left too.
    if (clientGone(ctx.req.socket)) {
      ctx.clientLeft = true;
      return Promise.resolve(undefined);
    }
    if (this.#waiting >= this.#maxWaiting) {
      return Promise.resolve(denial('upstream.saturated', `every upstream connection busy and ${this.#waiting} requests waiting for one`));
    }
    this.#waiting++;
    if (filtered) {
      return this.#forwardFiltered(ctx, res, options, onHeaders);
    }
    return new Promise((resolve) => {
      this.#pool.dispatch(options, new Exchange(ctx, res, onHeaders, resolve, this.#limits.upstreamTimeoutMs, this.#taken, this.#calls.on(ctx.req.socket)));
    });
  }

  /**
   * A tools/list answer is read whole before it is filtered: at most MAX_FILTERED_ANSWER_BYTES, all
   * of it within the upstream timeout (a list, not a stream: an upstream still sending it then is
   * cut off with 504), and no longer than the client waits for it.
   */
  async #forwardFiltered(ctx: RequestContext, res: ServerResponse, options: Dispatcher.RequestOptions, onHeaders: () => void): Promise<Denial | undefined> {
    const timeout = this.#limits.upstreamTimeoutMs;
    // A timer cleared with the answer (not AbortSignal.timeout, whose timer nothing clears: it ran
    // on for the whole timeout after every tools/list), and the client's leaving, abort one signal.
    const abort = new AbortController();
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeout);
    let clientGone = false;
    const underWay = {
      clientLeft: (): void => {
        clientGone = true;
        abort.abort();
      },
    };
    const open = this.#calls.on(ctx.req.socket);
    open.add(underWay);
    let response;
    const chunks: Buffer[] = [];
    let size = 0;
    // Waiting for a connection, the request leaves undici's queue only when one takes it (and drops
    // it then, its signal aborted): the deadline, or the client's leaving, ends the wait now, as an Exchange's does.
    const abandoned = new Promise<never>((_, reject) => {
      abort.signal.addEventListener('abort', () => reject(new errors.RequestAbortedError()), { once: true });
    });
    try {
      response = await Promise.race([this.#countedPool.request({ ...options, signal: abort.signal }), abandoned]);
      const invalid = invalidAnswer(response.statusCode, response.headers);
      if (invalid !== undefined) {
        // Not read: destroyed, it emits an AbortError that, unheard, would end the process.
        response.body.on('error', () => undefined).destroy();
        return invalid;
      }
      onHeaders();
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_FILTERED_ANSWER_BYTES) {
          response.body.destroy();
          return denial('upstream.unavailable', `tools/list answer over ${MAX_FILTERED_ANSWER_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (timedOut) return denial('upstream.timeout', `tools/list answer not complete within ${timeout} ms`);
      // The client leaving is its own choice, as on a streamed answer: nothing to answer, nothing failed.
      if (clientGone) {
        ctx.clientLeft = true;
        res.destroy();
        return undefined;
      }
      return upstreamDenial(error);
    } finally {
      clearTimeout(deadline);
      open.delete(underWay);
    }
    const body = Buffer.concat(chunks, size);
    const headers = responseHeaders(ctx, response.headers);
    // Every answer with a body, not only a 200: an MCP client shows the body of an error status to its user.
    delete headers['content-length'];
    let filtered: Buffer = body;
    if (body.length > 0) {
      const answer = filterToolsList(ctx, body, header(response.headers['content-type']), header(response.headers['content-encoding']));
      filtered = answer.body;
      // Written anew, uncompressed: an encoding the upstream applied anyway is not this body's.
      headers['content-type'] = answer.contentType;
      delete headers['content-encoding'];
    }
    // Never in a 204 (RFC 9110 §8.6), nor as 0 in a 304, where it would be the representation's.
    if (response.statusCode !== 204 && response.statusCode !== 304) headers['content-length'] = String(filtered.length);
    res.writeHead(response.statusCode, headers);
    res.end(filtered);
    return undefined;
  }

  /** A connection took a waiting request, or the pool gave up on it. */
  readonly #taken = (): void => {
    this.#waiting--;
  };

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

/**
 * Passes a request's events on to `handler`, and tells the forwarder once that it left the queue:
 * a connection took it (and sent it, or dropped it when it was answered meanwhile), or the pool gave up on it.
 */
class Waiting implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler;
  #taken: (() => void) | undefined;

  constructor(handler: Dispatcher.DispatchHandler, taken: () => void) {
    this.#handler = handler;
    this.#taken = taken;
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#leaveQueue();
    this.#handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#leaveQueue();
    this.#handler.onResponseError?.(controller, error);
  }

  #leaveQueue(): void {
    this.#taken?.();
    this.#taken = undefined;
  }
}

/** The most of a GET's body read for no one after a HEAD's answer to keep its connection: undici's body.dump() bound. */
const MAX_DISCARDED_BYTES = 128 * 1024;

/** The largest tools/list answer the sidecar reads to filter (502 above it): a list of thousands of tools. */
const MAX_FILTERED_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * One request to the upstream and its answer, written straight into the client's response as it
 * arrives (an undici dispatch handler: no intermediate stream, no per-request AsyncResource or
 * stream.finished listeners as undici's stream() adds). Resolves once the answer is complete, or
 * with a Denial when the upstream failed before the status line was sent on.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #ctx: RequestContext;
  readonly #res: ServerResponse;
  readonly #onHeaders: () => void;
  readonly #resolve: (failure: Denial | undefined) => void;
  readonly #timeoutMs: number;
  #controller: Dispatcher.DispatchController | undefined;
  /** Runs while the status line, or the next body chunk, is awaited; stopped while the client is the slow side. */
  #timer: NodeJS.Timeout | undefined;
  /** The agent's status line has come. */
  #headReceived = false;
  /**
   * The answer's status and headers, held until its first body byte or its end, as Node would
   * hold them anyway: until then the agent failing is still answered with a 502 or 504.
   */
  #status = 0;
  #headers: Record<string, string | string[]> | undefined;
  #settled = false;
  /** Body bytes still due by the upstream's Content-Length, or -1 when it sent none. */
  #due = -1;
  /** For a client's HEAD, sent as GET: the body bytes still read for no one before the connection is dropped instead. */
  #discardable = -1;
  #ended = false;
  /** Tells the forwarder a connection took this request (or the pool gave up on it); called once. */
  #taken: (() => void) | undefined;
  /** The calls under way on the client's connection, this one among them until it settles. */
  readonly #open: Set<UnderWay>;

  constructor(
    ctx: RequestContext, res: ServerResponse, onHeaders: () => void, resolve: (failure: Denial | undefined) => void, timeoutMs: number, taken: () => void, open: Set<UnderWay>,
  ) {
    this.#taken = taken;
    this.#ctx = ctx;
    this.#res = res;
    this.#onHeaders = onHeaders;
    this.#resolve = resolve;
    this.#timeoutMs = timeoutMs;
    // From the dispatch: a request that finds every upstream connection busy waits in undici's
    // queue, with no deadline of its own.
    this.#timer = setTimeout(expire, timeoutMs, this);
    // A client that leaves before the answer ends the call: the agent stops working for no one
    // (waiting, it is never sent), as Envoy resets the upstream stream of a downstream that went away.
    this.#open = open;
    open.add(this);
  }

  // Written to a connection (again, when undici retries it on another one): the clock starts again.
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#leaveQueue();
    this.#controller = controller;
    // Answered while it waited for a connection: it is not sent.
    if (this.#settled) {
      controller.abort(new errors.RequestAbortedError('no upstream connection came free in time'));
      return;
    }
    this.#timer?.refresh();
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: not passed on; the final answer follows
    const invalid = invalidAnswer(statusCode, headers);
    if (invalid !== undefined) {
      this.#settle(invalid);
      // Its connection, whose answers cannot be trusted to be HTTP, is closed with it.
      controller.abort(new errors.ResponseError(invalid.detail ?? '', statusCode, {}));
      return;
    }
    this.#timer?.refresh();
    this.#headReceived = true;
    this.#onHeaders();
    if (statusCode === 204 || statusCode === 304) {
      // No content by definition (RFC 9110 §15.3.5, §15.4.5): complete with its head. A 304 may
      // name the Content-Length of the representation (§8.6), which undici then reports as a
      // body cut short.
      this.#ended = true;
      const head = responseHeaders(this.#ctx, headers);
      // Never in a 204 (§8.6): a client reading it as a length would take the next answer on its
      // connection, kept and reused, for this one's body.
      if (statusCode === 204) delete head['content-length'];
      this.#res.writeHead(statusCode, head).end();
      this.#settle(undefined);
      return;
    }
    if (this.#ctx.req.method === 'HEAD') {
      // The GET's head is the HEAD's answer (RFC 9110 §9.3.2), Content-Length included; Node sends
      // no body to a HEAD. The body is read to its end, so the connection is kept.
      this.#ended = true;
      this.#discardable = MAX_DISCARDED_BYTES;
      this.#res.writeHead(statusCode, responseHeaders(this.#ctx, headers)).end();
      return;
    }
    this.#status = statusCode;
    this.#headers = responseHeaders(this.#ctx, headers);
    const length = headers['content-length'];
    this.#due = typeof length === 'string' && /^\d{1,15}$/.test(length) ? Number(length) : -1;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#discardable !== -1) {
      // Read for no one within one upstream timeout of the head (the timer is not refreshed: a
      // stream would hold its connection for ever) and the bound: past either, dropping one
      // connection costs less than reading on.
      this.#discardable -= chunk.length;
      if (this.#discardable < 0) controller.abort(new errors.RequestAbortedError('the body of a HEAD answer is over the bound'));
      return;
    }
    this.#timer?.refresh();
    if (this.#headers !== undefined) this.#writeHead(this.#headers);
    if (this.#due !== -1) {
      this.#due -= chunk.length;
      if (this.#due === 0) {
        // The last byte the upstream announced: one end() writes headers and body at once.
        this.#ended = true;
        this.#res.end(chunk);
        return;
      }
    }
    if (this.#res.write(chunk)) return;
    // Written to a response the client has closed: no 'drain' will come.
    if (this.#res.destroyed) {
      this.clientLeft();
      return;
    }
    controller.pause();
    clearTimeout(this.#timer);
    // No timer runs while the client is the slow side: its leaving ends the wait (watched from the start).
    this.#res.once('drain', () => {
      if (this.#settled) return;
      this.#startTimer();
      controller.resume();
    });
  }

  onResponseEnd(): void {
    this.#settle(undefined);
    if (this.#ended) return;
    if (this.#headers !== undefined) this.#writeHead(this.#headers);
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // Given up on before a connection took it (the upstream unreachable, the pool closed).
    this.#leaveQueue();
    if (this.#ended) {
      // The client has the whole answer (a 304 undici finds short, say): nothing to cut.
      this.#settle(undefined);
      return;
    }
    // The client leaving is its own choice; anything else is the agent failing.
    const clientLeft = error instanceof errors.RequestAbortedError;
    if (clientLeft && !this.#res.headersSent) {
      // Nothing of the answer reached it: nothing to answer, nothing failed.
      this.#ctx.clientLeft = true;
      this.#settle(undefined);
      return;
    }
    if (!this.#headReceived || this.#headers !== undefined) {
      // Nothing of the answer has reached the client: it gets a 502 or 504 instead.
      this.#settle(upstreamDenial(error));
      return;
    }
    // Mid-body: the status line is sent, all we can do is close.
    if (!clientLeft) this.#ctx.upstreamCutOff = upstreamDenial(error).detail ?? 'unknown';
    if (this.#headers !== undefined) this.#writeHead(this.#headers); // the agent's status, for the request's count
    this.#settle(undefined);
    this.#res.destroy();
  }

  /** The upstream took longer than the timeout for a free connection, the status line or the next chunk. */
  timedOut(): void {
    if (this.#controller === undefined) {
      this.#settle(denial('upstream.timeout', `no upstream connection free within ${this.#timeoutMs} ms`));
      return;
    }
    this.#controller.abort(this.#headReceived ? new errors.BodyTimeoutError() : new errors.HeadersTimeoutError());
  }

  #leaveQueue(): void {
    this.#taken?.();
    this.#taken = undefined;
  }

  /** The client's connection closed (or its answer was written to a closed one). */
  clientLeft(): void {
    // Answered whole (a HEAD whose GET body is still read): nothing to end.
    if (this.#settled || this.#ended) return;
    if (this.#controller !== undefined) {
      this.#controller.abort(new errors.RequestAbortedError('the client went away'));
      return;
    }
    // Still waiting for a connection: settled now, it is not sent when one comes free.
    this.#ctx.clientLeft = true;
    this.#settle(undefined);
  }

  /** Writes the held status and headers (sent with what the response writes next). */
  #writeHead(headers: Record<string, string | string[]>): void {
    this.#headers = undefined;
    this.#res.writeHead(this.#status, headers);
  }

  /** (Re)starts the clock; a timer already running is replaced. */
  #startTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(expire, this.#timeoutMs, this);
  }

  #settle(failure: Denial | undefined): void {
    this.#settled = true;
    this.#open.delete(this);
    clearTimeout(this.#timer);
    this.#resolve(failure);
  }
}

// One function for every exchange's timer, so starting one allocates no closure.
function expire(exchange: Exchange): void {
  exchange.timedOut();
}

/**
 * An answer's end-to-end headers: without the hop-by-hop ones, those its Connection header names
 * included (RFC 9110 §7.6.1), and with `dropOwned` without any `x-ca-a2a-*` one, in either spelling.
 */
export function endToEndHeaders(upstream: IncomingHttpHeaders, dropOwned = false): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  const connection = upstream.connection;
  const connectionListed = connectionListedHeaders(Array.isArray(connection) ? connection.join(',') : connection);
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || connectionListed?.has(name) === true) continue;
    if (dropOwned && isOwnedName(name)) continue;
    headers[name] = value;
  }
  return headers;
}

/**
 * A name in the sidecar's `x-ca-a2a-*` namespace, spelled with dashes or underscores: whatever
 * reads headers CGI-style (WSGI, PHP, Rack, and clients and gateways built on them) takes
 * `x_ca_a2a_subject` for `x-ca-a2a-subject`.
 */
function isOwnedName(name: string): boolean {
  return name.startsWith('x-ca-a2a-') || (name.includes('_') && name.replaceAll('_', '-').startsWith('x-ca-a2a-'));
}

/**
 * The agent's answer headers as the client gets them. The `x-ca-a2a-*` names are the sidecar's in
 * both directions: an agent's own (a copied request header, a forged identity, in either spelling)
 * are dropped, so a client reads in them only what this sidecar set.
 *
 * Everything else end to end passes, Set-Cookie included: a cookie is the agent's content (a
 * session of its own, a load balancer's stickiness), and it grants nothing here, where every call
 * is decided on its token alone; the client's Cookie reaches the agent as it came.
 */
function responseHeaders(ctx: RequestContext, upstream: IncomingHttpHeaders): Record<string, string | string[]> {
  const headers = endToEndHeaders(upstream, true);
  Object.assign(headers, ctx.responseHeaders);
  headers['x-ca-a2a-request-id'] = ctx.requestId;
  return headers;
}

/**
 * The request's header fields as the agent gets them, the sidecar's own first: a server that keeps
 * only its first so many fields (Node's maxHeadersCount) must never lose the verified identity to a
 * client's padding. A flat array, as undici writes it in order; an object would put a client's
 * integer-like names ('0', '1', …) ahead of every other key. With `identityEncoding` the client's
 * Accept-Encoding gives way to `identity`.
 */
function upstreamHeaders(ctx: RequestContext, identityEncoding: boolean): string[] {
  const fields: string[] = [];
  const principal = ctx.principal;
  if (principal) fields.push('x-ca-a2a-subject', principal.subject, 'x-ca-a2a-client-id', principal.clientId, 'x-ca-a2a-roles', principal.roles.join(','));
  fields.push('x-ca-a2a-request-id', ctx.requestId);
  for (const [name, value] of Object.entries(traceHeaders(ctx.trace))) fields.push(name, value);
  if (identityEncoding) fields.push('accept-encoding', 'identity');
  const client = new Map<string, string>();
  const connectionListed = connectionListedHeaders(ctx.req.headers.connection);
  const raw = ctx.req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (isDroppedRequestHeader(name, connectionListed)) continue;
    if (identityEncoding && name === 'accept-encoding') continue;
    const value = raw[i + 1] as string;
    const before = client.get(name);
    // Repeated fields join with ', ' (RFC 9110 §5.3), cookies with '; ' (RFC 6265 §5.4).
    client.set(name, before === undefined ? value : `${before}${name === 'cookie' ? '; ' : ', '}${value}`);
  }
  // The peer this sidecar saw ends X-Forwarded-For, as Envoy and Go's ReverseProxy (oauth2-proxy)
  // append it: an agent's framework that believes its loopback proxy (Rails by default, Express
  // with 'trust proxy' loopback) takes the right-most entry it does not trust for the client, which
  // was otherwise whatever the client wrote there.
  const peer = normaliseIp(ctx.sourceIp);
  if (peer !== '') {
    const before = client.get('x-forwarded-for');
    client.set('x-forwarded-for', before === undefined ? peer : `${before}, ${peer}`);
  }
  for (const [name, value] of client) fields.push(name, value);
  return fields;
}

/**
 * A header the sidecar sets, owns or must not pass on: the `x-ca-a2a-*` names in either spelling
 * (isOwnedName), and the hop-by-hop and dropped ones also with underscores read as dashes.
 * CGI-style upstreams (WSGI, PHP, Rack) map `X_Original_URL` and `X-Original-URL` to the same
 * variable, so either spelling from a client could stand in for the other (the class of
 * CVE-2025-64484 in oauth2-proxy; nginx and Caddy drop such names outright).
 */
function isDroppedRequestHeader(name: string, connectionListed: Set<string> | undefined): boolean {
  if (isOwnedName(name) || DROPPED_REQUEST_HEADERS.has(name) || connectionListed?.has(name) === true) return true;
  if (!name.includes('_')) return false;
  const respelled = name.replaceAll('_', '-');
  // X-Forwarded-For is the client's, but the sidecar ends it (upstreamHeaders): spelled otherwise,
  // it would be a second one to such an upstream, without the peer the sidecar saw.
  return DROPPED_REQUEST_HEADERS.has(respelled) || connectionListed?.has(respelled) === true || respelled === 'x-forwarded-for';
}

const PLAIN_CONNECTION = /^\s*(keep-alive|close)\s*$/i;

/**
 * Header names the client's Connection header makes hop-by-hop; none for the usual keep-alive or
 * close. Never Content-Type: it is the one the transport layer checked, and a field meant for every
 * recipient of the content is no connection option (RFC 9110 §7.6.1); dropped, the agent would get
 * a POST with no type, to read otherwise than the sidecar did, or not at all.
 */
function connectionListedHeaders(connection: string | undefined): Set<string> | undefined {
  if (connection === undefined || PLAIN_CONNECTION.test(connection)) return undefined;
  const listed = new Set(connection.toLowerCase().split(',').map((name) => name.trim()));
  listed.delete('content-type');
  return listed;
}

/**
 * An answer whose status is no HTTP status (RFC 9110 §15: 100 to 599; Node and undici take any
 * three digits), which a client "SHOULD process as a 5xx": refused as such, not passed on as
 * something a client may read as a success, nor counted as an answer the agent gave.
 */
function invalidStatus(status: number): Denial | undefined {
  return status > 599 ? denial('upstream.unavailable', `status ${status}`) : undefined;
}

/**
 * An answer that cannot be passed on as it came (the agent's to a client, or an egress target's to
 * the agent): a status that is none (above), or a body in a transfer coding besides chunked
 * (`gzip, chunked`), which undici unchunks and leaves coded: with Transfer-Encoding dropped as
 * hop-by-hop, the client would take the coded bytes for the body. nginx answers such an upstream
 * 502 too ("upstream sent unknown Transfer-Encoding").
 */
export function invalidAnswer(status: number, headers: IncomingHttpHeaders): Denial | undefined {
  const invalid = invalidStatus(status);
  if (invalid !== undefined) return invalid;
  const coding = headers['transfer-encoding'];
  if (coding === undefined || status === 204 || status === 304) return undefined;
  const codings = Array.isArray(coding) ? coding.join(',') : coding;
  return codings.trim().toLowerCase() === 'chunked' ? undefined : denial('upstream.unavailable', 'a transfer coding other than chunked');
}

/**
 * The one mapping from undici and socket error codes to 502 / 504 (matched on .code). The code is
 * the denial's detail: never on the wire (5xx), it tells the audit line's reader what failed.
 */
export function upstreamDenial(error: unknown): Denial {
  const code = (error as { code?: unknown }).code;
  const detail = typeof code === 'string' ? code.slice(0, 64) : (error as Error | undefined)?.name?.slice(0, 64);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      return denial('upstream.timeout', detail);
    default:
      // ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, UND_ERR_CLOSED, EHOSTUNREACH, …
      return denial('upstream.unavailable', detail);
  }
}

/** A response header field as one value: lines repeated are joined, as RFC 9110 §5.3 allows. */
function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
