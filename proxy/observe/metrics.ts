import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type GaugeConfiguration, type LabelValues } from 'prom-client';

/** A count kept as a plain number on the request path; its counter takes it in when read. */
export interface Tally {
  count: number;
}

/**
 * A Counter whose per-request label sets are tallied as plain numbers and added to it when it is
 * read (a scrape, or a test reading the registry). prom-client's inc() builds and validates a
 * label hash on every call; counts read at scrape time are the same counts.
 */
export class TalliedCounter<T extends string> extends Counter<T> {
  readonly #tallies: { readonly labels: LabelValues<T>; readonly tally: Tally }[] = [];
  readonly #byKey = new Map<string, Tally>();

  constructor(configuration: CounterConfiguration<T>) {
    super({
      ...configuration,
      collect(this: Counter<T>) {
        (this as TalliedCounter<T>).#takeTallies();
      },
    });
  }

  /** A tally for one label set; `tally.count++` then counts like `inc(labels)`. */
  tally(labels: LabelValues<T>): Tally {
    const tally = { count: 0 };
    this.#tallies.push({ labels, tally });
    return tally;
  }

  /** The tally of a label set found by `key`, which the caller makes unique to it (cheaper than prom-client's hash). */
  tallyFor(key: string, labels: () => LabelValues<T>): Tally {
    let tally = this.#byKey.get(key);
    if (tally === undefined) {
      tally = this.tally(labels());
      this.#byKey.set(key, tally);
    }
    return tally;
  }

  #takeTallies(): void {
    for (const { labels, tally } of this.#tallies) {
      if (tally.count === 0) continue;
      this.inc(labels, tally.count);
      tally.count = 0;
    }
  }
}

/** A Gauge read from its owner when scraped, instead of set on every change. */
export class SampledGauge<T extends string> extends Gauge<T> {
  readonly #sources: { readonly labels: LabelValues<T>; readonly read: () => number }[] = [];

  constructor(configuration: GaugeConfiguration<T>) {
    super({
      ...configuration,
      collect(this: Gauge<T>) {
        for (const { labels, read } of (this as SampledGauge<T>).#sources) this.set(labels, read());
      },
    });
  }

  sample(labels: LabelValues<T>, read: () => number): void {
    this.#sources.push({ labels, read });
  }
}

/**
 * Every metric the sidecar exports, on one registry per sidecar instance (tests run several
 * sidecars in one process). Labels are bounded: service, method (only methods the policy names,
 * else `other`), outcome, status, reason (a DenialCode), role (only roles the RBAC file names).
 * docs/metrics.md documents each name; test/proxy/metrics-docs.test.ts keeps the two in step.
 */
export function createSidecarMetrics(options: { collectProcess?: boolean } = {}) {
  const registry = new Registry();
  if (options.collectProcess ?? true) collectDefaultMetrics({ register: registry, prefix: 'ca_a2a_' });
  const registers = [registry];
  const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

  return {
    registry,
    requests: new TalliedCounter({
      name: 'ca_a2a_requests_total',
      help: 'Requests handled by the sidecar, by service, JSON-RPC method, outcome and HTTP status.',
      labelNames: ['service', 'method', 'outcome', 'status'] as const,
      registers,
    }),
    droppedRequests: new Counter({
      name: 'ca_a2a_dropped_requests_total',
      help: 'Requests pipelined behind one answered with Connection: close: not processed, not answered (RFC 9112 section 9.6).',
      labelNames: ['service'] as const,
      registers,
    }),
    droppedConnections: new Counter({
      name: 'ca_a2a_connections_dropped_total',
      help: 'Client connections closed unanswered as soon as accepted: the listener held limits.max_client_connections already.',
      labelNames: ['service'] as const,
      registers,
    }),
    requestDuration: new Histogram({
      name: 'ca_a2a_request_duration_seconds',
      help: 'Whole request time in the sidecar, from first byte to response end.',
      labelNames: ['service', 'outcome'] as const,
      buckets: latencyBuckets,
      registers,
    }),
    upstreamDuration: new Histogram({
      name: 'ca_a2a_upstream_duration_seconds',
      help: 'Time spent waiting on the upstream agent (response headers received).',
      labelNames: ['service'] as const,
      buckets: latencyBuckets,
      registers,
    }),
    denials: new Counter({
      name: 'ca_a2a_denials_total',
      help: 'Refused requests by denial code (the reason label is a code from docs/errors.md).',
      labelNames: ['service', 'reason', 'status'] as const,
      registers,
    }),
    authnFailures: new Counter({
      name: 'ca_a2a_authn_failures_total',
      help: 'Authentication failures by reason; jwks_unavailable counts IdP outages apart from bad tokens.',
      labelNames: ['service', 'reason'] as const,
      registers,
    }),
    authnSuccesses: new TalliedCounter({
      name: 'ca_a2a_authn_success_total',
      help: 'Requests that authenticated: a verified token (cache hits included), presented as bound, its DPoP proof accepted when one is needed, not revoked.',
      labelNames: ['service'] as const,
      registers,
    }),
    authzDecisions: new TalliedCounter({
      name: 'ca_a2a_authz_decisions_total',
      help: 'Authorization decisions by method, role and decision (allow, deny, would_deny in dry-run).',
      labelNames: ['service', 'method', 'role', 'decision'] as const,
      registers,
    }),
    rateLimited: new Counter({
      name: 'ca_a2a_rate_limited_total',
      help: 'Requests refused with 429.',
      labelNames: ['service', 'method'] as const,
      registers,
    }),
    replays: new Counter({
      name: 'ca_a2a_replays_total',
      help: 'Requests refused because their one-time id (DPoP proof jti) was already used.',
      labelNames: ['service'] as const,
      registers,
    }),
    revocations: new Counter({
      name: 'ca_a2a_revocations_total',
      help: 'Revocations applied to this sidecar\'s in-process set, by kind (jti, subject, before) and source (push, load, local: the stolen-token alarm\'s own when the durable revocation failed).',
      labelNames: ['service', 'kind', 'source'] as const,
      registers,
    }),
    revokedRefused: new Counter({
      name: 'ca_a2a_revoked_token_refusals_total',
      help: 'Requests refused because their token was revoked.',
      labelNames: ['service'] as const,
      registers,
    }),
    anomalousTokenUsage: new Counter({
      name: 'ca_a2a_anomalous_token_usage_total',
      help: 'Tokens seen from more distinct source addresses than the policy allows.',
      labelNames: ['service', 'action'] as const,
      registers,
    }),
    egressRequests: new Counter({
      name: 'ca_a2a_egress_requests_total',
      help: 'Outbound calls made for the agent through the egress listener, by target, outcome and status.',
      labelNames: ['service', 'target', 'outcome', 'status'] as const,
      registers,
    }),
    egressDuration: new Histogram({
      name: 'ca_a2a_egress_duration_seconds',
      help: 'Outbound call time until the target answered (token, proof and network included).',
      labelNames: ['service', 'target'] as const,
      buckets: latencyBuckets,
      registers,
    }),
    tokenCache: new TalliedCounter({
      name: 'ca_a2a_token_cache_total',
      help: 'Verified-token cache lookups by result (hit, miss).',
      labelNames: ['service', 'result'] as const,
      registers,
    }),
    jwksFetches: new Counter({
      name: 'ca_a2a_jwks_fetches_total',
      help: 'Fetches of the issuer discovery document or JWKS, by result.',
      labelNames: ['service', 'result'] as const,
      registers,
    }),
    policyReloads: new Counter({
      name: 'ca_a2a_policy_reloads_total',
      help: 'Policy loads by result (success, failure). A failure keeps the previous policy.',
      labelNames: ['service', 'result'] as const,
      registers,
    }),
    policyInfo: new Gauge({
      name: 'ca_a2a_policy_info',
      help: 'Always 1; the version label is the content hash of the policy in force.',
      labelNames: ['service', 'version'] as const,
      registers,
    }),
    shadowDisagreements: new Counter({
      name: 'ca_a2a_shadow_disagreements_total',
      help: 'Requests the shadow (candidate) policy decides differently from the enforced one, by both decisions (allow, deny).',
      labelNames: ['service', 'enforced', 'shadow'] as const,
      registers,
    }),
    storeErrors: new Counter({
      name: 'ca_a2a_store_errors_total',
      help: 'Errors from shared stores (Redis, PostgreSQL) by store and the fallback taken.',
      labelNames: ['service', 'store', 'fallback'] as const,
      registers,
    }),
    openConnections: new SampledGauge({
      name: 'ca_a2a_open_connections',
      help: 'Client connections open now, busy or idle, by listener (inbound: the proxied port; egress: the agent\'s).',
      labelNames: ['service', 'listener'] as const,
      registers,
    }),
    connectionLimit: new SampledGauge({
      name: 'ca_a2a_client_connections_limit',
      help: 'limits.max_client_connections of the policy in force: the inbound listener closes connections past it unanswered.',
      labelNames: ['service'] as const,
      registers,
    }),
    bufferedBodyBytes: new SampledGauge({
      name: 'ca_a2a_buffered_body_bytes',
      help: 'Bytes of request bodies the sidecar holds now, over every request being read, checked or forwarded.',
      labelNames: ['service'] as const,
      registers,
    }),
    bufferedBodyLimit: new SampledGauge({
      name: 'ca_a2a_buffered_body_bytes_limit',
      help: 'limits.max_buffered_body_bytes of the policy in force: a request whose body would take the sidecar past it gets 503 transport.overloaded.',
      labelNames: ['service'] as const,
      registers,
    }),
    logLinesDropped: new TalliedCounter({
      name: 'ca_a2a_log_lines_dropped_total',
      help: 'Log lines (audit lines included) dropped unwritten: stdout was not being read and 16 MiB of lines were waiting already.',
      labelNames: ['service'] as const,
      registers,
    }),
    upstreamMetricsFetches: new Counter({
      name: 'ca_a2a_upstream_metrics_fetches_total',
      help: 'Fetches of the upstream\'s own metrics (upstream_metrics_path) for a scrape, by result: success (appended) or why none of it was (http_error, unreachable, too_large, too_many_samples).',
      labelNames: ['service', 'result'] as const,
      registers,
    }),
    upstreamMetricsLinesDropped: new Counter({
      name: 'ca_a2a_upstream_metrics_lines_dropped_total',
      help: 'Lines of the upstream\'s own metrics left out of an appended fetch, by reason: own_family (a name the sidecar exposes), unparseable (a line Prometheus would fail the scrape on).',
      labelNames: ['service', 'reason'] as const,
      registers,
    }),
    inFlight: new SampledGauge({
      name: 'ca_a2a_in_flight_requests',
      help: 'Requests currently inside the sidecar.',
      labelNames: ['service'] as const,
      registers,
    }),
  };
}

export type SidecarMetrics = ReturnType<typeof createSidecarMetrics>;
