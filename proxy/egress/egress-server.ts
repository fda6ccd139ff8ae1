import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import { signedHeaders } from '../client/signed-headers.js';
import { createContext, type Layer, type RequestContext } from '../context.js';
import { DENIALS, denial, type Denial } from '../denials.js';
import { refuseClientErrors, writeRawRefusal } from '../http/client-error.js';
import { endToEndHeaders, invalidAnswer, upstreamDenial } from '../forward.js';
import type { ProofKey } from '../integrity/proof.js';
import type { AuditLog } from '../observe/audit.js';
import type { SidecarMetrics } from '../observe/metrics.js';
import type { AccessToken, TokenSource } from '../oauth/client-credentials.js';
import { MAX_TOKEN_REFUSAL_BYTES, RENEWAL_HOLD_MS, refusedForToken, RenewalHolds } from '../oauth/renewal-holds.js';
import type { EgressTarget, ServicePolicy } from '../policy/model.js';
import type { Refuser } from '../respond.js';
import { bodyLayer, describeRequest, inviteBody, transportLayer, type BodyBudget } from '../layers/transport.js';
import { runPipeline } from '../pipeline.js';
import { egressCalls } from './decide.js';
import { clientGone, ConnectionCalls, type UnderWay } from '../http/connection-calls.js';
import { isLoopbackHostname } from '../http/loopback.js';
import { closeAfterUpgradeRequest } from '../http/upgrade.js';
import { traceHeaders } from '../http/trace-context.js';

export interface EgressDeps {
  readonly policy: () => ServicePolicy;
  readonly tokens: TokenSource;
  readonly key: ProofKey;
  readonly metrics: SidecarMetrics;
  readonly refuser: Refuser;
  readonly audit: AuditLog;
  /** The request body bytes the process holds, shared with the inbound side: one memory bound. */
  readonly bodyBudget: BodyBudget;
}

// The agent addresses its sidecar by a loopback address. A web page in a browser on the same host
// can reach 127.0.0.1 too, by DNS rebinding (its own name made to resolve to 127.0.0.1, so the
// browser treats the listener as the page's origin and lets it read the answers); its requests
// then carry that name in Host. HTTP/1.0 without Host is no browser's.
function isLoopbackHost(host: string | undefined): boolean {
  return host === undefined || isLoopbackHostname(host.replace(/:\d{1,5}$/, ''));
}

// The agent's headers that go on: content negotiation and MCP Streamable HTTP's own (the target's
// /mcp refuses 406 a client that does not accept both application/json and text/event-stream).
// Everything else the agent sends, its Authorization and x-ca-a2a-* included, stays here.
const FORWARDED_AGENT_HEADERS = ['accept', 'mcp-protocol-version', 'mcp-session-id'] as const;

function agentHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_AGENT_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return headers;
}

/** What an unexpected error was, for the log: its name and code, and its message cut short. */
function bugDetail(error: unknown): string {
  if (!(error instanceof Error)) return `non-error thrown: ${typeof error}`;
  const code = (error as { code?: unknown }).code;
  return `${error.name}${typeof code === 'string' ? ` ${code.slice(0, 64)}` : ''}: ${error.message.slice(0, 200)}`;
}


/** A 401's first bytes: its whole body when it ends within MAX_TOKEN_REFUSAL_BYTES, else with the rest unread. */
interface HeldAnswer {
  readonly head: Buffer;
  readonly rest: AsyncIterator<Buffer> | undefined;
}

async function holdAnswer(body: AsyncIterable<Buffer>): Promise<HeldAnswer> {
  const rest = body[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  for (let next = await rest.next(); !next.done; next = await rest.next()) {
    chunks.push(next.value);
    size += next.value.length;
    if (size > MAX_TOKEN_REFUSAL_BYTES) return { head: Buffer.concat(chunks, size), rest };
  }
  return { head: Buffer.concat(chunks, size), rest: undefined };
}

/** The held answer as the agent gets it: the bytes read, then any still to come. */
async function* passOn(held: HeldAnswer): AsyncGenerator<Buffer> {
  try {
    yield held.head;
    for (let next = await held.rest?.next(); next !== undefined && !next.done; next = await held.rest?.next()) yield next.value;
  } finally {
    // Ended early (the agent left): the target's answer is not read on.
    await held.rest?.return?.();
  }
}

/** The agent closed its connection before its answer: the call to the target was not sent, or was abandoned. */
class AgentLeft extends Error {}

/** The status label of a call the agent abandoned (nginx's 499 Client Closed Request; never sent). */
const CLIENT_CLOSED = 499;

/**
 * One call's watch on its agent's connection. The agent leaving before its whole answer went back
 * ends the call: the target's answer would go nowhere, and waiting for it held a connection to the
 * target until timeout_ms. Watched on the connection, as inbound: Node never tells a call
 * pipelined behind another that its answer's client has gone.
 */
class AgentWatch implements UnderWay {
  left: boolean;
  /** Ends what is under way for the call: its request to the target, then its answer streaming back. */
  end: (() => void) | undefined;

  constructor(socket: Socket) {
    // Gone already (while its body was read; closed, or its FIN sent): the call is never sent.
    this.left = clientGone(socket);
  }

  clientLeft(): void {
    this.left = true;
    this.end?.();
  }
}

/**
 * The outbound half of the sidecar, for its agent only (bind it to 127.0.0.1): the agent posts a
 * plain request to /TARGET/PATH; the sidecar checks the policy allows that target and method,
 * adds its service's token, a fresh DPoP proof and Content-Digest, and streams the target's
 * answer back unchanged. It retries only a call whose token the target's sidecar refused (401
 * with the authn JSON-RPC code), once, with a new token (a refused call was not served), unless
 * that target refused a new token too within RENEWAL_HOLD_MS; any other repeat is the agent's to decide.
 */
export function createEgressServer(deps: EgressDeps): { server: Server; close(): Promise<void> } {
  // undici fixes a pool's timeouts when it is built, so pools are keyed by origin and timeout:
  // a reload that changes timeout_ms gets new pools instead of keeping the first policy's.
  const pools = new Map<string, Pool>();
  const poolKey = (origin: string, timeoutMs: number): string => `${timeoutMs} ${origin}`;
  const poolFor = (origin: string, timeoutMs: number): Pool => {
    const key = poolKey(origin, timeoutMs);
    let pool = pools.get(key);
    if (!pool) {
      pool = new Pool(origin, { connections: 64, keepAliveTimeout: 30_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: Math.min(timeoutMs, 5_000) });
      pools.set(key, pool);
    }
    return pool;
  };
  const wantedKeys = new WeakMap<ServicePolicy, ReadonlySet<string>>();
  const wantedBy = (policy: ServicePolicy): ReadonlySet<string> => {
    let keys = wantedKeys.get(policy);
    if (!keys) {
      const egress = policy.egress;
      keys = new Set(egress ? [...egress.targets.values()].map((target) => poolKey(new URL(target.url).origin, egress.timeoutMs)) : []);
      wantedKeys.set(policy, keys);
    }
    return keys;
  };
  // Closes the pools the live policy no longer uses (a removed target, an old timeout). undici's
  // close() lets requests already dispatched on a pool finish, and a pool is taken and used in
  // one synchronous step, so no request is cut off.
  const retireUnused = (policy: ServicePolicy): void => {
    const wanted = wantedBy(policy);
    for (const [key, pool] of pools) {
      if (wanted.has(key)) continue;
      pools.delete(key);
      void pool.close();
    }
  };

  // Built once per policy version, like the inbound pipeline.
  const transports = new WeakMap<ServicePolicy, readonly Layer[]>();
  const transportFor = (policy: ServicePolicy): readonly Layer[] => {
    let layers = transports.get(policy);
    if (!layers) {
      // The agent beside it is the only caller: its body is read at once, as its head is checked.
      layers = [transportLayer(policy, deps.bodyBudget), bodyLayer(policy, deps.bodyBudget)];
      transports.set(policy, layers);
    }
    return layers;
  };

  const renewalHolds = new RenewalHolds();
  const holdKey = (target: EgressTarget): string => `${target.name} ${target.url}`;
  const refusesToken = (target: EgressTarget, token: AccessToken): boolean => renewalHolds.refuses(holdKey(target), token);
  const holdRenewal = (target: EgressTarget, token: AccessToken): void => {
    renewalHolds.hold(holdKey(target), token);
    deps.audit.event('egress_token_refused', { target: target.name, hold_ms: RENEWAL_HOLD_MS }, 'the target refused a new token too: its 401s are passed on without renewing the token for a while', 'warn');
  };

  const refuseWith = (ctx: RequestContext, res: ServerResponse, refusal: Denial, target: string, outcome: 'refused' | 'no_token' = 'refused'): void => {
    // As inbound: refused before its whole body came, the connection closes.
    if (!ctx.req.complete && !res.headersSent) res.setHeader('connection', 'close');
    deps.refuser.refuse(ctx, res, refusal);
    deps.metrics.egressRequests.inc({ service: ctx.policy.service, target, outcome, status: res.statusCode });
  };

  const calls = new ConnectionCalls();
  /** `refusal`, when given, is the request's verdict; `expectsContinue`: invited when its body is read. */
  const handle = async (req: IncomingMessage, res: ServerResponse, refusal?: Denial, expectsContinue = false): Promise<void> => {
    const policy = deps.policy();
    retireUnused(policy);
    closeAfterUpgradeRequest(req, res);
    const ctx = createContext(req, policy, randomUUID(), req.socket.remoteAddress ?? '', performance.now());
    if (expectsContinue) inviteBody(ctx, res);
    const watch = new AgentWatch(req.socket);
    const open = calls.on(req.socket);
    open.add(watch);
    try {
      await exchange(ctx, res, refusal, watch);
    } catch (error) {
      // A bug: handle() is not awaited, so a rejection would end the process, or leave the agent
      // waiting. 500 internal.error, what failed logged as on the inbound side (a 5xx hides it).
      try {
        deps.audit.event('internal_error', { request_id: ctx.requestId, trace_id: ctx.trace.traceId, err: bugDetail(error) }, 'egress request failed', 'error');
        refuseWith(ctx, res, denial('internal.error'), 'none');
      } catch {
        res.destroy();
      }
    } finally {
      open.delete(watch);
      deps.bodyBudget.held -= ctx.bodyBytesHeld;
    }
  };

  const exchange = async (ctx: RequestContext, res: ServerResponse, refusal: Denial | undefined, watch: AgentWatch): Promise<void> => {
    const { req, policy } = ctx;
    const service = policy.service;
    const refuse = (refusal: Denial, target: string, outcome: 'refused' | 'no_token' = 'refused'): void => refuseWith(ctx, res, refusal, target, outcome);
    if (refusal !== undefined) {
      // Refused without the transport layer: its audit line names the path all the same.
      describeRequest(ctx);
      return refuse(refusal, 'none');
    }
    const egress = policy.egress;
    const transport = await runPipeline(transportFor(policy), ctx);
    if (transport !== undefined && typeof transport === 'object') return refuse(cutOffBy(req) ?? transport, 'none');
    if (!isLoopbackHost(req.headers.host)) return refuse(denial('authz.egress_denied', 'the Host header must name a loopback address (127.0.0.1, localhost or [::1])'), 'none');
    const slash = ctx.path.indexOf('/', 1);
    const targetName = slash === -1 ? ctx.path.slice(1) : ctx.path.slice(1, slash);
    const target = egress?.targets.get(targetName);
    if (!egress || !target || req.method !== 'POST') return refuse(denial('authz.egress_denied', `no egress to '${targetName.slice(0, 64)}'`), 'none');
    const path = slash === -1 ? '/' : ctx.path.slice(slash);
    const body = ctx.body ?? Buffer.alloc(0);
    const decided = egressCalls(target, path, body, policy.limits);
    if ('code' in decided) return refuse(decided, target.name);
    ctx.calls = decided.calls;
    if (decided.refusal !== undefined) return refuse(decided.refusal, target.name);

    const started = performance.now();
    const url = `${target.url}${path}`;
    const send = async (token: AccessToken) => {
      const headers = await signedHeaders({ key: deps.key, accessToken: token.accessToken, tokenType: token.tokenType, method: 'POST', url, body });
      if (watch.left) throw new AgentLeft();
      // undici's headers timeout starts when a connection takes the request: one waiting for a
      // connection (every one busy with a long answer) would wait forever. timeout_ms counts from here.
      const abort = new AbortController();
      watch.end = () => abort.abort();
      const timer = setTimeout(() => abort.abort(), egress.timeoutMs);
      try {
        return await poolFor(new URL(target.url).origin, egress.timeoutMs).request({
          method: 'POST',
          path: new URL(url).pathname,
          headers: { ...agentHeaders(req), ...traceHeaders(ctx.trace), ...headers, 'content-type': 'application/json' },
          body,
          signal: abort.signal,
        });
      } catch (error) {
        if (watch.left) throw new AgentLeft();
        if (abort.signal.aborted) throw Object.assign(new Error(`no answer within ${egress.timeoutMs} ms`), { code: 'UND_ERR_HEADERS_TIMEOUT' });
        throw error;
      } finally {
        clearTimeout(timer);
        watch.end = undefined;
      }
    };
    let response;
    let renewed = false;
    // A 401's body, read to tell the target sidecar's refusal of the token from its agent's own 401.
    let refusal401: HeldAnswer | undefined;
    try {
      const token = await deps.tokens.getToken();
      response = await send(token);
      // RFC 6750 §3.1: a 401 says the token is not (or no longer) good: revoked, or signed by a key
      // the issuer has replaced. When the target's sidecar refused it (refusedForToken), the
      // request was not served, so it goes once more with a new token, and the one refused is
      // dropped; unless this target has refused a new token already (below), when its 401 is the answer.
      if (response.statusCode === 401 && !refusesToken(target, token)) {
        refusal401 = await holdAnswer(response.body);
        if (refusal401.rest === undefined && refusedForToken(refusal401.head.toString('utf8'))) {
          deps.tokens.invalidate(token);
          // No new token to be had: the target's 401 is the answer, as it would have been.
          const fresh = await deps.tokens.getToken().catch(() => token);
          if (fresh.accessToken !== token.accessToken) {
            renewed = true;
            refusal401 = undefined;
            response = await send(fresh);
            if (response.statusCode === 401) holdRenewal(target, fresh);
          }
        }
      }
      if (watch.left) {
        // Answered after the agent left, before the answer could stream: read by no one.
        response.body.destroy();
        throw new AgentLeft();
      }
    } catch (error) {
      if (error instanceof AgentLeft) {
        // Nothing to answer: counted as nginx counts a client that closed its request (499).
        deps.metrics.egressRequests.inc({ service, target: target.name, outcome: 'client_closed', status: CLIENT_CLOSED });
        return;
      }
      const code = (error as { code?: string }).code;
      if (code !== undefined && /^(INVALID_CLIENT|ISSUER_|TOKEN_REQUEST|INVALID_OPTIONS)/.test(code)) {
        // A TokenSourceError's message names the issuer and the cause, never a secret or a token.
        deps.audit.event('egress_token_failure', { target: target.name, code, detail: (error as Error).message }, 'could not obtain an access token', 'error');
        return refuse(denial('upstream.unavailable', `no access token: ${code}`), target.name, 'no_token');
      }
      return refuse(upstreamDenial(error), target.name);
    }
    const invalid = invalidAnswer(response.statusCode, response.headers);
    if (invalid !== undefined) {
      // Not read: destroyed, it emits an error that, unheard, would end the process.
      response.body.on('error', () => undefined).destroy();
      return refuse(invalid, target.name);
    }
    deps.metrics.egressDuration.observe({ service, target: target.name }, (performance.now() - started) / 1000);
    deps.metrics.egressRequests.inc({ service, target: target.name, outcome: 'forwarded', status: response.statusCode });
    deps.audit.event('egress_call', { target: target.name, path, method: decided.calls.map((call) => call.tool ?? call.method).join(','), status: response.statusCode, ...(renewed ? { token_renewed: true } : {}), request_id: ctx.requestId, trace_id: ctx.trace.traceId }, 'outbound call');
    // The target's hop-by-hop headers stop here, as the inbound side drops the agent's.
    res.writeHead(response.statusCode, endToEndHeaders(response.headers));
    const answer = refusal401 === undefined ? response.body : Readable.from(passOn(refusal401));
    // A queued answer is never closed by Node: its agent's leaving is the watch's to tell.
    watch.end = () => answer.destroy();
    await pipeline(answer, res).catch(() => res.destroy());
  };

  // The Host check is the transport layer's, refused like every other request.
  const server = createServer({ headersTimeout: 30_000, requestTimeout: 60_000, requireHostHeader: false }, (req, res) => void handle(req, res));
  // As on the inbound port: a request the transport layer refuses from its head is refused before
  // Node's 100 Continue invites its body; Node would answer any Expect but 100-continue with a
  // bare 417, and close a CONNECT without a word, neither counted nor logged.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => void handle(req, res, undefined, true));
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res, denial('transport.expectation_failed', 'only 100-continue is supported', { headers: { connection: 'close' } }));
  });
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const refusal = denial('transport.method_not_allowed', 'CONNECT is not served');
    const policy = deps.policy();
    const ctx = createContext(req, policy, randomUUID(), socket.remoteAddress ?? '', performance.now());
    describeRequest(ctx);
    deps.refuser.count(ctx, refusal);
    deps.audit.denied(ctx, refusal);
    deps.metrics.egressRequests.inc({ service: policy.service, target: 'none', outcome: 'refused', status: DENIALS[refusal.code].status });
    writeRawRefusal(socket, refusal, ctx.requestId);
  });
  // What Node's parser refuses is answered, counted and logged as on the inbound port.
  const cutOffBy = refuseClientErrors(server, (refusal, socket, requestId) => {
    deps.refuser.count(undefined, refusal);
    deps.audit.deniedConnection(socket.remoteAddress ?? '', deps.policy().version, refusal, requestId);
    deps.metrics.egressRequests.inc({ service: deps.policy().service, target: 'none', outcome: 'refused', status: DENIALS[refusal.code].status });
  });
  return {
    server,
    async close() {
      server.close();
      server.closeAllConnections();
      await Promise.all([...pools.values()].map((pool) => pool.close()));
    },
  };
}
