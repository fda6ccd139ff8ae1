import type { ValidateFunction } from 'ajv';

/**
 * The normalised, frozen policy the pipeline is built from. Produced only by loadPolicy();
 * never mutated: a reload builds a new one and swaps it in whole.
 */

export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export interface RateLimitRule {
  readonly points: number;
  readonly windowSeconds: number;
}

export interface RateLimitPolicy {
  readonly enabled: boolean;
  readonly defaultRule: RateLimitRule;
  readonly perRole: ReadonlyMap<string, RateLimitRule>;
}

/** What the audit log records besides refusals (observe/audit.ts). */
export interface AuditPolicy {
  /** One line per request that passed every layer. */
  readonly granted: boolean;
}

/** The stolen-token alarm (layers/anomaly.ts). */
export interface AnomalyPolicy {
  readonly enabled: boolean;
  /** IPs or CIDRs whose X-Forwarded-For entries are believed. */
  readonly trustedProxies: readonly string[];
  readonly maxSources: number;
  readonly windowSeconds: number;
  readonly autoRevoke: boolean;
}

export type MethodAccess = 'rbac' | 'tool_holders' | 'per_tool';

export type IntegrityMode = 'required' | 'optional' | 'off';

export interface IntegrityPolicy {
  readonly dpop: IntegrityMode;
  readonly requireBoundTokens: boolean;
  readonly proofMaxAgeSeconds: number;
  readonly leewaySeconds: number;
  readonly algorithms: readonly string[];
  readonly replayStoreFailure: 'deny' | 'allow';
}

export interface EgressTarget {
  readonly name: string;
  readonly url: string;
  readonly paths: ReadonlySet<string>;
  readonly methods: ReadonlySet<string>;
  readonly tools: ReadonlySet<string>;
}

export interface EgressPolicy {
  readonly clientId: string;
  readonly timeoutMs: number;
  readonly targets: ReadonlyMap<string, EgressTarget>;
}

export interface MethodPolicy {
  readonly name: string;
  readonly access: MethodAccess;
  /** Overrides the service's integrity.dpop for this method. */
  readonly integrity: IntegrityMode | undefined;
  /** Absent when the policy gives no params schema. */
  readonly validateParams: ValidateFunction | undefined;
  readonly rateLimit: RateLimitRule | undefined;
  readonly location: SourceLocation;
}

export interface ToolPolicy {
  readonly name: string;
  readonly validateArguments: ValidateFunction | undefined;
  readonly location: SourceLocation;
}

/** A compiled allow/deny pattern list: exact names in a Set, wildcards as anchored RegExps. */
export interface NameMatcher {
  readonly exact: ReadonlySet<string>;
  readonly patterns: readonly { readonly source: string; readonly regex: RegExp }[];
}

export interface RolePolicy {
  readonly name: string;
  readonly description: string | undefined;
  readonly allow: NameMatcher;
  readonly deny: NameMatcher;
  readonly toolAllow: NameMatcher;
  readonly toolDeny: NameMatcher;
  readonly toolArguments: ReadonlyMap<string, ValidateFunction>;
  readonly location: SourceLocation;
}

export interface AuthPolicy {
  readonly issuer: string;
  readonly audience: string;
  readonly jwksUri: string | undefined;
  readonly algorithms: readonly string[];
  readonly clockToleranceSeconds: number;
  readonly rolesClaim: readonly string[];
  /** What marks a verified token as an access token (auth.token_types). */
  readonly tokenTypes: TokenTypes;
  readonly jwksCacheMaxAgeSeconds: number;
  readonly jwksCooldownSeconds: number;
  readonly jwksTimeoutMs: number;
  readonly tokenCacheSize: number;
}

/**
 * Header typ values as media types (lower case, `application/` prepended when there is no
 * slash: RFC 7515 §4.1.9), and typ claim values as written.
 */
export interface TokenTypes {
  readonly header: readonly string[];
  readonly claim: readonly string[];
}

export interface LimitsPolicy {
  readonly maxBodyBytes: number;
  /** Request body bytes the process holds at once, over every request (never below maxBodyBytes). */
  readonly maxBufferedBodyBytes: number;
  readonly maxDepth: number;
  readonly maxBatch: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  /** Client connections the listener holds at once; Node closes one more as soon as it is accepted. */
  readonly maxClientConnections: number;
  readonly upstreamConnectTimeoutMs: number;
  readonly upstreamTimeoutMs: number;
  readonly upstreamMaxConnections: number;
  /** A client connection idle this long while a request is served is closed (Node's server.timeout). */
  readonly idleTimeoutMs: number;
}

export type EndpointKind = 'jsonrpc' | 'call_tool' | 'rest';

export interface EndpointPolicy {
  readonly path: string;
  readonly kind: EndpointKind;
  /** rest: the method the endpoint calls. */
  readonly method: string | undefined;
  /** The HTTP method the endpoint accepts (POST, or GET for body-less rest endpoints). */
  readonly httpMethod: 'GET' | 'POST';
}

export interface ServicePolicy {
  /** Content hash of every file that makes up this policy (service file, rbac file, schema files). */
  readonly version: string;
  readonly service: string;
  readonly mode: 'enforce' | 'dry-run';
  readonly upstream: string;
  /** Path of the upstream's own metrics, merged into the admin /metrics; absent when not asked. */
  readonly upstreamMetricsPath: string | undefined;
  readonly files: readonly string[];
  readonly auth: AuthPolicy;
  /** 'GET /health' style keys. */
  readonly publicRoutes: ReadonlySet<string>;
  readonly endpoints: ReadonlyMap<string, EndpointPolicy>;
  readonly limits: LimitsPolicy;
  readonly rateLimit: RateLimitPolicy;
  readonly methods: ReadonlyMap<string, MethodPolicy>;
  readonly tools: ReadonlyMap<string, ToolPolicy>;
  readonly roles: ReadonlyMap<string, RolePolicy>;
  readonly audit: AuditPolicy;
  readonly anomaly: AnomalyPolicy;
  readonly integrity: IntegrityPolicy;
  /** Absent when this service calls no other service. */
  readonly egress: EgressPolicy | undefined;
}
