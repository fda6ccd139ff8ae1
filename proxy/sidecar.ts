import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { DropArgument, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { DestinationStream } from 'pino';
import { createAdminServer } from './admin-server.js';
import { KeySource } from './auth/key-source.js';
import { createContext, FORWARD, type Layer, type Verdict } from './context.js';
import { DENIALS, denial, type Denial } from './denials.js';
import { Forwarder } from './forward.js';
import { refuseClientErrors, writeRawRefusal } from './http/client-error.js';
import { closeAfterUpgradeRequest } from './http/upgrade.js';
import { createEgressServer } from './egress/egress-server.js';
import { createProofKey } from './integrity/proof.js';
import { isLoopbackListen, listen } from './listen.js';
import { createTokenSource } from './oauth/client-credentials.js';
import { AuditLog } from './observe/audit.js';
import { createLogger, type Logger } from './observe/logger.js';
import { createSidecarMetrics, type SidecarMetrics } from './observe/metrics.js';
import { buildPipeline, runPipeline } from './pipeline.js';
import { describeRequest, inviteBody, MAX_HEADER_FIELDS, type BodyBudget } from './layers/transport.js';
import { formatProblem, isPolicyLoadError } from './policy/errors.js';
import { loadPolicy, type PolicyOverrides } from './policy/load.js';
import type { LimitsPolicy, ServicePolicy } from './policy/model.js';
import { PolicyWatcher } from './policy/watch.js';
import { ShadowPolicySource } from './shadow.js';
import { boundedRoles, methodLabel, Refuser } from './respond.js';
import type { RevocationSet } from './stores/revocation-set.js';
import type { Revoker } from './stores/revoker.js';
import { openSidecarStores, type SidecarStoreOptions } from './stores/sidecar-stores.js';

export interface SidecarOptions {
  /** The service policy file (policies/services/NAME.yaml for shipped services). */
  readonly policyFile: string;
  readonly listen?: string;
  readonly adminListen?: string;
  readonly upstream?: string;
  readonly issuer?: string;
  /** The URLs clients address this service by (DPoP htu behind a load balancer). */
  readonly publicUrls?: readonly string[];
  /** A candidate policy evaluated beside the enforced one; disagreements are counted and logged, never enforced. */
  readonly shadowPolicyFile?: string;
  /** Start the egress listener here (127.0.0.1 only); needs the policy's egress section and a client secret. */
  readonly egressListen?: string;
  /** The egress client's secret (CA_A2A_CLIENT_SECRET); never from policy YAML. */
  readonly clientSecret?: string;
  /** Egress may ask a plain-http issuer off this machine for tokens (--allow-http-issuer). */
  readonly allowHttpIssuer?: boolean;
  /** Target service → base URL, overriding the policy's egress targets (CA_A2A_SERVICE_URLS). */
  readonly serviceUrls?: Readonly<Record<string, string>>;
  /** Proxies whose X-Forwarded-For is believed, beside the policy's anomaly.trusted_proxies (CA_A2A_TRUSTED_PROXIES). */
  readonly trustedProxies?: readonly string[];
  /** Watch the policy files and hot-reload them (default true). */
  readonly watchPolicy?: boolean;
  readonly logDestination?: DestinationStream;
  readonly logLevel?: string;
  /** Injected clock (ms since epoch) for token time checks. */
  readonly now?: () => number;
  /** Shutdown: how long in-flight requests may take to finish. */
  readonly drainTimeoutMs?: number;
  /**
   * Shared state: `redisUrl` (rate limits, one-time ids, token sources, revocation push),
   * `databaseUrl` (durable revocations), else `dataDir` (the embedded journal file), else memory.
   */
  readonly stores?: SidecarStoreOptions;
}

export interface Sidecar {
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string;
  /** The egress listener's URL, when started. */
  readonly egressUrl: string | undefined;
  readonly metrics: SidecarMetrics;
  readonly revocations: RevocationSet;
  /** The durable revocation write path, on this sidecar's stores. */
  readonly revoker: Revoker;
  policy(): ServicePolicy;
  /** Reloads the policy now; resolves to the version in force afterwards. */
  reload(): Promise<string>;
  close(): Promise<void>;
}

/** One policy version with everything built from it. In-flight requests keep the one they started on. */
interface Runtime {
  readonly policy: ServicePolicy;
  readonly layers: readonly Layer[];
  readonly forwarder: SharedForwarder;
}

/** A forwarder, shared by the policy versions with its upstream and limits, and its requests under way. */
interface SharedForwarder {
  readonly key: string;
  readonly forwarder: Forwarder;
  users: number;
}

/** The status label of a request whose client left before its answer (nginx's 499; never sent). */
const CLIENT_CLOSED = 499;

/**
 * Whether a request whose token verified still counts as authenticated although refused. Not when
 * refused as an authentication failure (revoked), nor before the revocations are loaded (whether
 * it is revoked is not known), nor when its DPoP proof was refused (401: missing, invalid, for
 * another request, stale, or from another key than the token's): the token was not shown to be
 * presented by the key it is bound to. A body refused for its digest (400) was sent by a caller
 * that did authenticate. A request counts as a success or a failure of authentication, never
 * both: their ratio is the auth success rate.
 */
function authenticatedDespite(denied: Denial): boolean {
  const row = DENIALS[denied.code];
  if (row.event === 'integrity_failure') return row.status !== 401;
  return row.event !== 'authentication_failure' && denied.code !== 'revocation.not_loaded';
}

/** Starts a sidecar: loads and compiles the policy, then listens. Throws on an invalid policy. */
export async function startSidecar(options: SidecarOptions): Promise<Sidecar> {
  const overrides: PolicyOverrides = { upstream: options.upstream, issuer: options.issuer, serviceUrls: options.serviceUrls, trustedProxies: options.trustedProxies };
  const initial = loadPolicy(options.policyFile, overrides);
  const service = initial.service;
  const metrics = createSidecarMetrics();
  // Present at 0 from the start, so the first drop is an increase a rule sees.
  metrics.logLinesDropped.inc({ service }, 0);
  const droppedLogLines = metrics.logLinesDropped.tally({ service });
  const logger = createLogger({ service, level: options.logLevel, destination: options.logDestination, onDrop: () => droppedLogLines.count++ });
  const audit = new AuditLog(logger);
  const refuser = new Refuser(metrics, audit, service);
  const now = options.now ?? Date.now;
  const shadow = options.shadowPolicyFile === undefined ? undefined : new ShadowPolicySource(options.shadowPolicyFile, overrides, { service, metrics, audit });
  const stores = await openSidecarStores(options.stores ?? {}, { service, metrics, audit, logger, now });
  const { revocations, rateLimits, oneTimeIds } = stores;
  const verified = metrics.authnSuccesses.tally({ service });
  const cacheHits = metrics.tokenCache.tally({ service, result: 'hit' });
  const cacheMisses = metrics.tokenCache.tally({ service, result: 'miss' });
  const bodyBudget: BodyBudget = { held: 0 };
  metrics.bufferedBodyBytes.sample({ service }, () => bodyBudget.held);
  // Those of the policy in force, kept across reloads that leave them as they were (the keys
  // fetched, the upstream connections open). A replaced key source is left to the requests that
  // hold it; a replaced forwarder is closed once the last request on it has its answer, so a
  // reload that changes the upstream or its limits leaves no pool, nor its idle connections, behind.
  let keySource: { readonly key: string; readonly keys: KeySource } | undefined;
  const forwarders = new Map<string, SharedForwarder>();
  const retire = (shared: SharedForwarder): void => {
    if (shared.users > 0 || shared === runtime.forwarder || forwarders.get(shared.key) !== shared) return;
    forwarders.delete(shared.key);
    void shared.forwarder.close();
  };

  const build = (policy: ServicePolicy): Runtime => {
    const keysKey = JSON.stringify(policy.auth);
    if (keySource?.key !== keysKey) keySource = { key: keysKey, keys: new KeySource(policy.auth, metrics, service) };
    const keys = keySource.keys;
    // What the pool is built with: a reload that changes another limit keeps its connections.
    const { upstreamConnectTimeoutMs, upstreamTimeoutMs, upstreamMaxConnections } = policy.limits;
    const forwarderKey = `${policy.upstream} ${upstreamConnectTimeoutMs} ${upstreamTimeoutMs} ${upstreamMaxConnections}`;
    let forwarder = forwarders.get(forwarderKey);
    if (!forwarder) {
      forwarder = { key: forwarderKey, forwarder: new Forwarder(policy.upstream, policy.limits), users: 0 };
      forwarders.set(forwarderKey, forwarder);
    }
    const layers = buildPipeline(policy, {
      keys, now, revocations, rateLimits, oneTimeIds, bodyBudget,
      tokenSources: stores.tokenSources,
      onAnomaly: stores.onAnomaly,
      onTokenSourceStoreError: stores.onTokenSourceStoreError,
      publicUrls: options.publicUrls ?? [],
      onReplayStoreError: (error, fallback, first) => {
        metrics.storeErrors.inc({ service, store: 'replay', fallback });
        // One line per outage (each refused request has its own audit line), as for the other stores.
        if (first) logger.error({ event_type: 'store_failure', store: 'replay', fallback, err: (error as Error).message }, 'one-time-id store failed');
      },
      onReplayStoreRecovered: () => logger.info({ event_type: 'store_recovered', store: 'replay' }, 'one-time-id store answers again'),
      onRateLimitStoreError: (error) => {
        metrics.storeErrors.inc({ service, store: 'rate_limit', fallback: 'allow' });
        logger.error({ event_type: 'store_failure', store: 'rate_limit', err: (error as Error).message }, 'rate-limit store failed; request allowed');
      },
      shadow: shadow?.layerDeps(),
      onTokenVerified: (hit) => {
        (hit ? cacheHits : cacheMisses).count++;
      },
    });
    metrics.policyInfo.reset();
    metrics.policyInfo.set({ service, version: policy.version }, 1);
    return { policy, layers, forwarder };
  };

  let runtime = build(initial);
  metrics.policyReloads.inc({ service, result: 'success' });
  let draining = false;
  let inFlight = 0;
  metrics.inFlight.sample({ service }, () => inFlight);

  const reload = async (): Promise<string> => {
    // Stopping (a SIGHUP while draining, a watch event before the watcher closed): the policy in force
    // serves the last requests. A reload now would watch the files again after close() stopped
    // watching them, and could open a pool after close() closed them.
    if (draining) return runtime.policy.version;
    // A refused edit's files too: the $ref schema or rbac file it misses may be created next.
    let looked: readonly string[] = [];
    try {
      const next = loadPolicy(options.policyFile, overrides);
      if (options.egressListen !== undefined) refuseEgressIdentityChange(next);
      const shadowOutcome = shadow?.reload() ?? 'unchanged';
      if (next.version !== runtime.policy.version || shadowOutcome === 'changed') {
        const replaced = runtime;
        runtime = build(next);
        retire(replaced.forwarder);
        applyListenerLimits(next.limits);
        audit.event('policy_reloaded', { policy_version: next.version }, 'policy reloaded');
      }
      // A broken shadow file is a failed reload too: the candidate in use is not the one on disk.
      metrics.policyReloads.inc({ service, result: shadowOutcome === 'failed' ? 'failure' : 'success' });
    } catch (error) {
      metrics.policyReloads.inc({ service, result: 'failure' });
      const problems = isPolicyLoadError(error) ? error.problems.map(formatProblem) : [(error as Error).message];
      if (isPolicyLoadError(error)) looked = error.files;
      audit.event('policy_reload_failed', { policy_version: runtime.policy.version, problems }, 'policy reload refused; previous policy kept', 'error');
    }
    // After every attempt, the directories of the policy in force (one swapped meanwhile, watched anew).
    watcher?.update([...watchedFiles(runtime.policy), ...looked]);
    return runtime.policy.version;
  };
  // The egress token source is built once, for the client whose secret this process was given:
  // a reload cannot move it to another client or issuer, and must not look as if it had.
  const refuseEgressIdentityChange = (next: ServicePolicy): void => {
    const [was, is] = [`${initial.egress?.clientId} at ${initial.auth.issuer}`, `${next.egress?.clientId} at ${next.auth.issuer}`];
    if (is !== was) throw new Error(`egress calls as ${was} until a restart (the client secret belongs to that client); this edit would make it ${is}`);
  };
  const watchedFiles = (policy: ServicePolicy): string[] => [...policy.files, ...(shadow?.files() ?? [])];
  const watcher = options.watchPolicy === false ? undefined : new PolicyWatcher(watchedFiles(initial), () => void reload());

  // Connections this sidecar closes after the answer to the request named here. A request
  // pipelined behind that one is not processed (RFC 9112 §9.6), nor forwarded only to have its
  // answer dropped with the connection: after a refused GET with a body or an oversized body, the
  // bytes that follow may be another request to an intermediary that framed them otherwise. Such
  // refusals are decided as soon as the refused request's head (or the end of its body) is parsed,
  // before Node parses the next request on the connection.
  const closing = new WeakMap<Socket, IncomingMessage>();

  /**
   * Handles a request; `refusal`, when given, is its verdict without running the layers.
   * `expectsContinue`: the client waits for 100 Continue, sent when its body is about to be read.
   */
  const handle = async (req: IncomingMessage, res: ServerResponse, refusal?: Denial, expectsContinue = false): Promise<void> => {
    const closedBy = closing.get(req.socket);
    if (closedBy !== undefined && closedBy !== req) {
      metrics.droppedRequests.inc({ service });
      return;
    }
    const current = runtime;
    const started = performance.now();
    inFlight++;
    current.forwarder.users++;
    // Draining: serve what still comes on an open connection, then close it, so the client (a load
    // balancer's pooled connection) goes to another task instead of keeping this one busy.
    if (draining) res.shouldKeepAlive = false;
    if (closeAfterUpgradeRequest(req, res) || draining) closing.set(req.socket, req);
    const ctx = createContext(req, current.policy, randomUUID(), req.socket.remoteAddress ?? '', started);
    if (expectsContinue) inviteBody(ctx, res);
    // Refused without the layers: its audit line names the client and path all the same.
    if (refusal !== undefined) describeRequest(ctx);
    let outcome = 'forwarded';
    let status = 0;
    try {
      let verdict: Verdict;
      try {
        verdict = refusal ?? await runPipeline(current.layers, ctx);
      } catch (error) {
        logger.error({ event_type: 'internal_error', request_id: ctx.requestId, err: (error as Error).message }, 'layer failed');
        verdict = denial('internal.error');
      }
      const denied = verdict === FORWARD ? undefined : verdict;
      // A verified caller: authn sets one only for a token presented with the scheme its binding asks.
      if (ctx.principal !== undefined && (denied === undefined || authenticatedDespite(denied))) verified.count++;
      // A body the parser cut off (too slow, bad chunking) was answered by clientError: that answer
      // is this request's refusal, counted and logged here, also when the client has gone since.
      const cutOff = cutOffBy(req);
      if (denied !== undefined && ctx.clientLeft && cutOff === undefined) {
        // Gone while its call was checked: there is no one to refuse, and nothing was sent.
        outcome = 'client_closed';
        status = CLIENT_CLOSED;
        return;
      }
      if (denied !== undefined) {
        // Refused before its whole body came: close the connection. Node would otherwise keep it
        // for the rest of a body no one reads, and a client stalling it was refused again (408).
        const midBody = !req.complete && !res.headersSent;
        if (midBody) res.setHeader('connection', 'close');
        if (midBody || denied.headers?.['connection'] === 'close') closing.set(req.socket, req);
        refuser.refuse(ctx, res, cutOff ?? denied);
        outcome = 'refused';
        status = res.statusCode;
        return;
      }
      for (const wouldDeny of ctx.wouldDeny) refuser.wouldDeny(ctx, wouldDeny);
      if (!ctx.isPublic) {
        if (current.policy.audit.granted) audit.granted(ctx);
        // One decision per request and role: a dry-run request that enforce would refuse (for
        // one reason or several) is would_deny, never also allow.
        const method = methodLabel(ctx);
        const decision = ctx.wouldDeny.length > 0 ? 'would_deny' : 'allow';
        for (const role of boundedRoles(ctx)) metrics.authzDecisions.tallyFor(`${method} ${role} ${decision}`, () => ({ service, method, role, decision })).count++;
      }
      const upstreamStarted = performance.now();
      let failure: Denial | undefined;
      try {
        failure = await current.forwarder.forwarder.forward(ctx, res, () => {
          metrics.upstreamDuration.observe({ service }, (performance.now() - upstreamStarted) / 1000);
        });
      } catch (error) {
        // A bug on the way back (handle() is not awaited: a rejection here would end the process).
        logger.error({ event_type: 'internal_error', request_id: ctx.requestId, err: (error as Error).message }, 'forwarding failed');
        failure = denial('internal.error');
      }
      if (failure) {
        refuser.refuse(ctx, res, failure);
        outcome = 'upstream_error';
      } else if (ctx.clientLeft) {
        // Gone before the agent's answer: the call to the agent was ended (or, waiting for a
        // connection, never sent). Counted as nginx counts a client that closed its request.
        outcome = 'client_closed';
      } else if (ctx.upstreamCutOff !== undefined) {
        // The status line went out before the answer broke off: the client saw the connection end.
        outcome = 'upstream_error';
        logger.warn({ event_type: 'upstream_cut_off', request_id: ctx.requestId, status: res.statusCode, err: ctx.upstreamCutOff }, "the agent's answer stopped before its end");
      }
      status = ctx.clientLeft ? CLIENT_CLOSED : res.statusCode;
    } finally {
      inFlight--;
      bodyBudget.held -= ctx.bodyBytesHeld;
      current.forwarder.users--;
      retire(current.forwarder);
      const method = methodLabel(ctx);
      const code = status || res.statusCode;
      metrics.requests.tallyFor(`${method} ${outcome} ${code}`, () => ({ service, method, outcome, status: code })).count++;
      metrics.requestDuration.observe({ service, outcome }, (performance.now() - started) / 1000);
    }
  };

  const limits = initial.limits;
  const server: Server = createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Check timeouts every second (default 30 s) so a slow client is cut off close to its limit.
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    // Checked by the transport layer, which refuses like every other refusal; Node's own check
    // answered a bare 400 that was neither counted nor logged.
    requireHostHeader: false,
  }, (req, res) => void handle(req, res));
  // Node drops a request's fields past this count unseen: one more than the transport layer allows,
  // so that a request with too many is refused rather than checked without its last fields.
  server.maxHeadersCount = MAX_HEADER_FIELDS + 1;
  // While a request is served: no listener for 'timeout', so Node destroys the idle connection.
  server.timeout = limits.idleTimeoutMs;
  // A client opening connections without end (each one idle until headers_timeout_ms) would take
  // every file descriptor, and with them the upstream's, Redis's and the issuer's connections. Past
  // the limit Node closes each new connection as soon as it is accepted; the ones open are served.
  server.maxConnections = limits.maxClientConnections;
  countConnections(server, 'inbound');
  metrics.connectionLimit.sample({ service }, () => server.maxConnections);
  metrics.bufferedBodyLimit.sample({ service }, () => runtime.policy.limits.maxBufferedBodyBytes);
  let droppedSinceLog = 0;
  let lastDropLog = Number.NEGATIVE_INFINITY;
  server.on('drop', (peer?: DropArgument) => {
    metrics.droppedConnections.inc({ service });
    droppedSinceLog++;
    // One line a second at most: a flood of connections must not become a flood of log lines.
    const now = performance.now();
    if (now - lastDropLog < 1_000) return;
    logger.warn({ event_type: 'connections_dropped', dropped: droppedSinceLog, max_client_connections: server.maxConnections, source_ip: peer?.remoteAddress }, 'client connections over limits.max_client_connections closed unanswered');
    lastDropLog = now;
    droppedSinceLog = 0;
  });
  // Open connections, next to the limit: the accepted ones until they close (those dropped over the
  // limit are never 'connection's).
  function countConnections(listener: Server, name: 'inbound' | 'egress'): void {
    let open = 0;
    listener.on('connection', (socket: Socket) => {
      open++;
      socket.once('close', () => open--);
    });
    metrics.openConnections.sample({ service, listener: name }, () => open);
  }
  // Expect: 100-continue invites the body, but only when the body layer is about to read it: a
  // request refused before then, from its head by the transport layer (too many fields, a second
  // Content-Length, a body declared over the limit, the wrong type…) or by any layer before the
  // body's (an unknown or revoked caller), is refused instead of invited (Node would answer
  // 100 Continue to every one), by the same layers and with the same audit line as without Expect.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => void handle(req, res, undefined, true));
  // Any other expectation is refused here like every other request, not with Node's bare 417.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res, denial('transport.expectation_failed', 'only 100-continue is supported', { headers: { connection: 'close' } }));
  });
  // A reloaded policy's listener limits hold from then on: Node reads these at each timeout check
  // and each finished response, for connections already open too.
  function applyListenerLimits(next: LimitsPolicy): void {
    server.headersTimeout = next.headersTimeoutMs;
    server.requestTimeout = next.requestTimeoutMs;
    server.keepAliveTimeout = next.keepAliveTimeoutMs;
    server.timeout = next.idleTimeoutMs;
    server.maxConnections = next.maxClientConnections;
  }
  // CONNECT (a client taking the sidecar for a forward proxy): Node closed the connection without
  // a word; it is refused like any other method this server does not serve.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const refusal = denial('transport.method_not_allowed', 'CONNECT is not served');
    const ctx = createContext(req, runtime.policy, randomUUID(), socket.remoteAddress ?? '', performance.now());
    describeRequest(ctx);
    refuser.count(ctx, refusal);
    audit.denied(ctx, refusal);
    writeRawRefusal(socket, refusal, ctx.requestId);
  });
  const cutOffBy = refuseClientErrors(server, (refusal, socket, requestId) => {
    refuser.count(undefined, refusal);
    audit.deniedConnection(socket.remoteAddress ?? '', runtime.policy.version, refusal, requestId);
  });

  async function startEgress(address: string): Promise<{ url: string; close(): Promise<void> }> {
    const egressPolicy = initial.egress;
    if (!egressPolicy) throw new Error(`--egress-listen given but the ${service} policy has no egress section`);
    if (!options.clientSecret) throw new Error(`egress needs the secret of client '${egressPolicy.clientId}' (CA_A2A_CLIENT_SECRET or CA_A2A_CLIENT_SECRET_FILE)`);
    if (!isLoopbackListen(address)) throw new Error(`the egress listener must bind a loopback address, not '${address}': only this task's agent may use it`);
    const key = await createProofKey();
    const tokens = createTokenSource({
      issuer: initial.auth.issuer,
      clientId: egressPolicy.clientId,
      clientSecret: options.clientSecret,
      dpopKey: { privateKey: key.privateKey, publicKey: key.publicKey },
      allowPlainHttp: options.allowHttpIssuer,
    });
    if (options.allowHttpIssuer && new URL(initial.auth.issuer).protocol === 'http:') {
      logger.warn({ event_type: 'issuer_plain_http', issuer: initial.auth.issuer }, 'egress asks the issuer for tokens over plain http: the network must be trusted or encrypt');
    }
    const egressServer = createEgressServer({ policy: () => runtime.policy, tokens, key, metrics, refuser, audit, bodyBudget });
    countConnections(egressServer.server, 'egress');
    const bound = await listen(egressServer.server, address);
    return { url: bound.url, close: egressServer.close };
  }

  const adminServer = createAdminServer(metrics.registry, {
    readiness: () => ({
      ready: !draining && revocations.loaded,
      details: { service, policy_version: runtime.policy.version, draining, revocations_loaded: revocations.loaded },
    }),
  }, () => {
    const path = runtime.policy.upstreamMetricsPath;
    return path === undefined ? undefined : `${new URL(runtime.policy.upstream).origin}${path}`;
  }, {
    fetched: (result) => metrics.upstreamMetricsFetches.inc({ service, result }),
    linesDropped: (reason, lines) => metrics.upstreamMetricsLinesDropped.inc({ service, reason }, lines),
  });
  let egress: Awaited<ReturnType<typeof startEgress>> | undefined;
  let address: Awaited<ReturnType<typeof listen>>;
  let adminAddress: Awaited<ReturnType<typeof listen>>;
  try {
    egress = options.egressListen === undefined ? undefined : await startEgress(options.egressListen);
    address = await listen(server, options.listen ?? '127.0.0.1:0');
    adminAddress = await listen(adminServer, options.adminListen ?? '127.0.0.1:0');
  } catch (error) {
    // A start that fails leaves nothing serving: no proxied port without its /ready and /metrics,
    // no egress port handing out this service's tokens.
    watcher?.close();
    server.close();
    adminServer.close();
    await egress?.close();
    await Promise.all([...forwarders.values()].map((shared) => shared.forwarder.close()));
    await stores.close();
    throw error;
  }
  void keySource?.keys.warm().then((error) => {
    if (error) logger.warn({ event_type: 'jwks_unavailable', issuer: initial.auth.issuer, err: error.message }, 'issuer keys not fetched yet; tokens are refused until they are');
  });
  logger.info({ event_type: 'sidecar_started', listen: address.url, admin: adminAddress.url, upstream: initial.upstream, policy_version: initial.version }, 'sidecar ready');

  return {
    url: address.url,
    port: address.port,
    adminUrl: adminAddress.url,
    egressUrl: egress?.url,
    metrics,
    revocations,
    revoker: stores.revoker,
    policy: () => runtime.policy,
    reload,
    async close(): Promise<void> {
      draining = true;
      watcher?.close();
      server.close();
      server.closeIdleConnections();
      const drainTimeoutMs = options.drainTimeoutMs ?? 25_000;
      logger.info({ event_type: 'sidecar_draining', in_flight: inFlight, drain_timeout_ms: drainTimeoutMs }, 'stopping: no new connections, draining in-flight requests');
      const deadline = Date.now() + drainTimeoutMs;
      while (inFlight > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        // A kept-alive connection whose request has just been answered is closed as soon as it is idle.
        server.closeIdleConnections();
      }
      if (inFlight > 0) logger.warn({ event_type: 'sidecar_drain_timeout', in_flight: inFlight }, 'drain deadline passed: cutting the requests still in flight');
      server.closeAllConnections();
      await egress?.close();
      await new Promise<void>((resolve) => adminServer.close(() => resolve()));
      adminServer.closeAllConnections();
      await Promise.all([...forwarders.values()].map((shared) => shared.forwarder.close()));
      await stores.close();
      logger.info({ event_type: 'sidecar_stopped' }, 'sidecar stopped');
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
    },
  };
}

export type { Logger };
