import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Ajv, ValidateFunction } from 'ajv';
import { createSchemaCompiler } from './ajv.js';
import { PolicyLoadError, type PolicyProblem } from './errors.js';
import { compileMatcher } from './matcher.js';
import type {
  EgressPolicy, EndpointKind, IntegrityMode, MethodPolicy, RateLimitRule, RolePolicy, ServicePolicy, SourceLocation, ToolPolicy,
} from './model.js';
import { validatePolicyFile } from './validate-file.js';
import { readPolicyText, readYamlSource, type YamlSource } from './yaml-source.js';
import { deepFreeze } from './freeze.js';
import { mediaType } from '../auth/token-type.js';
import { unsafeMatchers } from './schema-matchers.js';
import { parseCidr } from '../http/cidr.js';
import { redactUrlUser } from '../http/redact-url.js';

/** limits.max_buffered_body_bytes when unset (or max_body_bytes, when larger: one request must fit). */
const DEFAULT_MAX_BUFFERED_BODY_BYTES = 64 * 1024 * 1024;

// Shapes after JSON-Schema validation with defaults applied (see schemas/*.schema.json).
interface RawRule { points?: number; window_seconds?: number }
interface RawMethod { params?: Record<string, unknown>; access: MethodPolicy['access']; rate_limit?: RawRule; integrity?: IntegrityMode }
interface RawService {
  service: string; rbac: string; mode: 'enforce' | 'dry-run'; upstream: string; upstream_metrics_path?: string;
  public_routes: string[]; endpoints: { path: string; kind: EndpointKind; method?: string; http_method: 'GET' | 'POST' }[];
  auth: {
    issuer: string; audience: string; jwks_uri?: string; algorithms: string[]; clock_tolerance_seconds: number;
    roles_claim: string; token_types: { header: string[]; claim: string[] }; jwks_cache_max_age_seconds: number; jwks_cooldown_seconds: number;
    jwks_timeout_ms: number; token_cache_size: number;
  };
  limits: {
    max_body_bytes: number; max_buffered_body_bytes?: number; max_depth: number; max_batch: number; headers_timeout_ms: number;
    request_timeout_ms: number; keep_alive_timeout_ms: number; max_client_connections: number; upstream_connect_timeout_ms: number; upstream_timeout_ms: number; upstream_max_connections: number; idle_timeout_ms: number;
  };
  rate_limit: { enabled: boolean; points: number; window_seconds: number; per_role?: Record<string, RawRule> };
  audit: { granted: boolean };
  anomaly: { enabled: boolean; trusted_proxies: string[]; max_sources: number; window_seconds: number; auto_revoke: boolean };
  methods?: Record<string, RawMethod>;
  tools?: Record<string, { arguments?: Record<string, unknown> }>;
  integrity: {
    dpop: IntegrityMode; require_bound_tokens: boolean; proof_max_age_seconds: number; leeway_seconds: number;
    algorithms: string[]; replay_store_failure: 'deny' | 'allow';
  };
  egress?: { client_id: string; timeout_ms: number; targets: Record<string, { url: string; paths: string[]; methods: string[]; tools: string[] }> };
}
interface RawRole {
  description?: string; allow: string[]; deny: string[];
  tools?: { allow: string[]; deny: string[]; arguments?: Record<string, Record<string, unknown>> };
}
interface RawRbac { roles: Record<string, RawRole> }

/** Overrides from flags or the environment, applied after validation. */
export interface PolicyOverrides {
  readonly upstream?: string;
  readonly issuer?: string;
  /** Target service name → base URL, overriding the policy's egress targets (CA_A2A_SERVICE_URLS). */
  readonly serviceUrls?: Readonly<Record<string, string>>;
  /**
   * Proxies (IP or CIDR) believed beside the policy's anomaly.trusted_proxies (CA_A2A_TRUSTED_PROXIES):
   * where a deployment's load balancer runs is the deployment's, not the shared policy's.
   */
  readonly trustedProxies?: readonly string[];
}

/**
 * Loads a service policy: parse (with positions) → validate against the JSON Schema (every
 * error, with file:line:column) → resolve the rbac file and $ref'd schemas → compile matchers
 * and schemas → freeze. Throws PolicyLoadError and applies nothing when anything is wrong.
 */
export function loadPolicy(file: string, overrides: PolicyOverrides = {}): ServicePolicy {
  const serviceFile = resolve(file);
  const problems: PolicyProblem[] = [];
  const schemaFiles = new Map<string, boolean>();
  // The files read or looked for, so far: a refused load names them for the watcher.
  const looked = [serviceFile];
  const refused = (): PolicyLoadError => new PolicyLoadError(problems, [...looked, ...schemaFiles.keys()]);
  const service = readSource(serviceFile, problems);
  if (!service) throw refused();
  problems.push(...validatePolicyFile('service', service));
  if (problems.length > 0) throw rbacGivenAsService(service) ?? refused();
  const raw = service.data as RawService;

  const rbacFile = resolve(dirname(serviceFile), raw.rbac);
  looked.push(rbacFile);
  const rbacSource = readSource(rbacFile, problems, service.locate(['rbac']));
  if (!rbacSource) throw refused();
  problems.push(...validatePolicyFile('rbac', rbacSource));
  if (problems.length > 0) throw refused();
  const rbac = rbacSource.data as RawRbac;

  const files = [serviceFile, rbacFile];
  const hash = createHash('sha256').update(service.text).update('\0').update(rbacSource.text);
  const ajv = createSchemaCompiler();
  const schemaContext = { ajv, problems, files, hash, baseDir: dirname(serviceFile), schemaFiles };

  // The client's connection is idle while the upstream prepares its answer: a shorter idle timeout
  // would cut answers the upstream timeout allows.
  if (raw.limits.idle_timeout_ms <= raw.limits.upstream_timeout_ms) {
    problems.push({ ...service.locate(['limits', 'idle_timeout_ms']), path: '/limits/idle_timeout_ms', message: `idle_timeout_ms (${raw.limits.idle_timeout_ms}) must be above upstream_timeout_ms (${raw.limits.upstream_timeout_ms}): the client's connection is idle while the upstream prepares its answer` });
  }

  // One request of the largest size allowed must fit, or every such request would be refused 503.
  if (raw.limits.max_buffered_body_bytes !== undefined && raw.limits.max_buffered_body_bytes < raw.limits.max_body_bytes) {
    problems.push({ ...service.locate(['limits', 'max_buffered_body_bytes']), path: '/limits/max_buffered_body_bytes', message: `max_buffered_body_bytes (${raw.limits.max_buffered_body_bytes}) must not be below max_body_bytes (${raw.limits.max_body_bytes}): a request of the largest size allowed must fit` });
  }

  // Fail closed, but not by accident: lists that admit no token would refuse every caller.
  if (raw.auth.token_types.header.length === 0 && raw.auth.token_types.claim.length === 0) {
    problems.push({ ...service.locate(['auth', 'token_types']), path: '/auth/token_types', message: 'token_types lists no header typ and no typ claim: no token would be accepted' });
  }

  // Node's HTTP server refuses a headers timeout above the request timeout (ERR_OUT_OF_RANGE): the
  // sidecar would not start on such a policy, and a reload would keep a limit that cannot apply.
  if (raw.limits.headers_timeout_ms > raw.limits.request_timeout_ms) {
    problems.push({ ...service.locate(['limits', 'headers_timeout_ms']), path: '/limits/headers_timeout_ms', message: `headers_timeout_ms (${raw.limits.headers_timeout_ms}) must not be above request_timeout_ms (${raw.limits.request_timeout_ms}): the headers are part of the request` });
  }

  const methods = new Map<string, MethodPolicy>();
  for (const [name, method] of Object.entries(raw.methods ?? {})) {
    const location = service.locate(['methods', name]);
    // The sidecar reads a tool from tools/call (and /call_tool) only: any other per_tool method
    // would be refused on every call while explain, matrix and test said it was granted.
    if (method.access === 'per_tool' && name !== 'tools/call') {
      problems.push({ ...service.locate(['methods', name, 'access']), path: `/methods/${name}/access`, message: `per_tool is the access of tools/call only (the one method whose tool the sidecar reads), not of '${name}'` });
    }
    // And the other way round: with rbac (the default) or tool_holders, the tool of a tools/call or
    // /call_tool is never looked at, so a role allowing the method calls every tool, listed or not.
    if (name === 'tools/call' && method.access !== 'per_tool') {
      problems.push({ ...service.locate(['methods', name]), path: `/methods/${name}/access`, message: `tools/call must be per_tool: as ${method.access} its tool would go unchecked (any tool, listed under tools or not, to a role allowing the method)` });
    }
    methods.set(name, {
      name,
      access: method.access,
      integrity: method.integrity,
      validateParams: method.params ? compileSchema(schemaContext, method.params, service, ['methods', name, 'params']) : undefined,
      rateLimit: method.rate_limit ? rule(method.rate_limit, raw.rate_limit) : undefined,
      location,
    });
  }
  const tools = new Map<string, ToolPolicy>();
  for (const [name, tool] of Object.entries(raw.tools ?? {})) {
    tools.set(name, {
      name,
      validateArguments: tool.arguments ? compileSchema(schemaContext, tool.arguments, service, ['tools', name, 'arguments']) : undefined,
      location: service.locate(['tools', name]),
    });
  }
  const roles = new Map<string, RolePolicy>();
  for (const [name, role] of Object.entries(rbac.roles)) {
    const toolArguments = new Map<string, ValidateFunction>();
    for (const [tool, schema] of Object.entries(role.tools?.arguments ?? {})) {
      const compiled = compileSchema({ ...schemaContext, baseDir: dirname(rbacFile) }, schema, rbacSource, ['roles', name, 'tools', 'arguments', tool]);
      if (compiled) toolArguments.set(tool, compiled);
    }
    roles.set(name, {
      name,
      description: role.description,
      allow: compileMatcher(role.allow),
      deny: compileMatcher(role.deny),
      toolAllow: compileMatcher(role.tools?.allow ?? []),
      toolDeny: compileMatcher(role.tools?.deny ?? []),
      toolArguments,
      location: rbacSource.locate(['roles', name]),
    });
  }
  checkEndpoints(raw, service, problems);
  checkTrustedProxies(raw, service, problems, overrides.trustedProxies ?? []);
  checkEgressTargets(raw, service, problems, overrides.serviceUrls ?? {});
  checkUpstreamAndIssuer(raw, service, problems, overrides);
  if (problems.length > 0) throw refused();

  const auth = raw.auth;
  const policy: ServicePolicy = {
    version: hash.digest('hex').slice(0, 12),
    service: raw.service,
    mode: raw.mode,
    upstream: overrides.upstream ?? raw.upstream,
    upstreamMetricsPath: raw.upstream_metrics_path,
    files,
    auth: {
      issuer: overrides.issuer ?? auth.issuer,
      audience: auth.audience,
      jwksUri: overrides.issuer ? undefined : auth.jwks_uri,
      algorithms: auth.algorithms,
      clockToleranceSeconds: auth.clock_tolerance_seconds,
      rolesClaim: auth.roles_claim.split('.'),
      tokenTypes: { header: [...new Set(auth.token_types.header.map(mediaType))], claim: auth.token_types.claim },
      jwksCacheMaxAgeSeconds: auth.jwks_cache_max_age_seconds,
      jwksCooldownSeconds: auth.jwks_cooldown_seconds,
      jwksTimeoutMs: auth.jwks_timeout_ms,
      tokenCacheSize: auth.token_cache_size,
    },
    publicRoutes: new Set(raw.public_routes),
    endpoints: new Map(raw.endpoints.map((endpoint) => [endpoint.path, {
      path: endpoint.path,
      kind: endpoint.kind,
      method: endpoint.method,
      httpMethod: endpoint.kind === 'rest' ? endpoint.http_method : 'POST',
    }])),
    limits: {
      maxBodyBytes: raw.limits.max_body_bytes,
      maxBufferedBodyBytes: raw.limits.max_buffered_body_bytes ?? Math.max(DEFAULT_MAX_BUFFERED_BODY_BYTES, raw.limits.max_body_bytes),
      maxDepth: raw.limits.max_depth,
      maxBatch: raw.limits.max_batch,
      headersTimeoutMs: raw.limits.headers_timeout_ms,
      requestTimeoutMs: raw.limits.request_timeout_ms,
      keepAliveTimeoutMs: raw.limits.keep_alive_timeout_ms,
      maxClientConnections: raw.limits.max_client_connections,
      upstreamConnectTimeoutMs: raw.limits.upstream_connect_timeout_ms,
      upstreamTimeoutMs: raw.limits.upstream_timeout_ms,
      upstreamMaxConnections: raw.limits.upstream_max_connections,
      idleTimeoutMs: raw.limits.idle_timeout_ms,
    },
    rateLimit: {
      enabled: raw.rate_limit.enabled,
      defaultRule: { points: raw.rate_limit.points, windowSeconds: raw.rate_limit.window_seconds },
      perRole: new Map(Object.entries(raw.rate_limit.per_role ?? {}).map(([role, r]) => [role, rule(r, raw.rate_limit)])),
    },
    methods,
    tools,
    roles,
    audit: { granted: raw.audit.granted },
    anomaly: {
      enabled: raw.anomaly.enabled,
      trustedProxies: [...new Set([...raw.anomaly.trusted_proxies, ...(overrides.trustedProxies ?? [])])],
      maxSources: raw.anomaly.max_sources,
      windowSeconds: raw.anomaly.window_seconds,
      autoRevoke: raw.anomaly.auto_revoke,
    },
    integrity: {
      dpop: raw.integrity.dpop,
      requireBoundTokens: raw.integrity.require_bound_tokens,
      proofMaxAgeSeconds: raw.integrity.proof_max_age_seconds,
      leewaySeconds: raw.integrity.leeway_seconds,
      algorithms: raw.integrity.algorithms,
      replayStoreFailure: raw.integrity.replay_store_failure,
    },
    egress: raw.egress ? egressPolicy(raw.egress, overrides.serviceUrls ?? {}) : undefined,
  };
  return deepFreeze(policy);
}

/**
 * The roles file given where a service policy goes (`sidecar --policy rbac.yaml`, `explain
 * --policy`): one problem that says so, not six about the keys a service policy lacks.
 */
function rbacGivenAsService(source: YamlSource): PolicyLoadError | undefined {
  const data = source.data;
  if (typeof data !== 'object' || data === null || !('roles' in data) || 'service' in data) return undefined;
  const message = 'this is an rbac file (roles:), not a service policy: give the service policy whose rbac: names it';
  return new PolicyLoadError([{ ...source.locate([], 'roles'), path: '', message }], [source.file]);
}

function egressPolicy(raw: NonNullable<RawService['egress']>, urls: Readonly<Record<string, string>>): EgressPolicy {
  return {
    clientId: raw.client_id,
    timeoutMs: raw.timeout_ms,
    targets: new Map(Object.entries(raw.targets).map(([name, target]) => [name, {
      name,
      url: (urls[name] ?? target.url).replace(/\/$/, ''),
      paths: new Set(target.paths),
      methods: new Set(target.methods),
      tools: new Set(target.tools),
    }])),
  };
}

function rule(raw: RawRule, fallback: { points: number; window_seconds: number }): RateLimitRule {
  return { points: raw.points ?? fallback.points, windowSeconds: raw.window_seconds ?? fallback.window_seconds };
}

function readSource(file: string, problems: PolicyProblem[], referencedFrom?: SourceLocation): YamlSource | undefined {
  const read = readPolicyText(file);
  if ('error' in read) {
    // Reported where the file is named (a $ref or rbac path that is a directory or unreadable), or
    // where in the file the problem is (a byte that is not UTF-8).
    const at = read.at ? { file, ...read.at } : referencedFrom ?? { file, line: 1, column: 1 };
    problems.push({ ...at, path: '', message: read.error });
    return undefined;
  }
  const source = readYamlSource(file, read.text);
  problems.push(...source.problems);
  return source.problems.length > 0 ? undefined : source;
}

interface SchemaContext {
  readonly ajv: Ajv;
  readonly problems: PolicyProblem[];
  readonly files: string[];
  readonly hash: ReturnType<typeof createHash>;
  readonly baseDir: string;
  /** $ref'd schema files of this load (found or not), each given to ajv once: whether that worked. */
  readonly schemaFiles: Map<string, boolean>;
}

/**
 * Compiles an inline schema or one whose top-level `$ref` names a JSON/YAML schema file
 * (`file.json` or `file.json#/definitions/x`, relative to the policy file). The file is given to
 * ajv under its file: URL and the `$ref` pointed there, so keys beside the `$ref` constrain too
 * (they were dropped: a restriction written next to a shared schema silently did not apply).
 */
function compileSchema(context: SchemaContext, schema: Record<string, unknown>, source: YamlSource, path: string[]): ValidateFunction | undefined {
  const unsafe = unsafeMatchers(schema, source, path);
  if (unsafe.length > 0) {
    context.problems.push(...unsafe);
    return undefined;
  }
  let resolved = schema;
  const ref = schema.$ref;
  if (typeof ref === 'string' && !ref.startsWith('#')) {
    const at = { ...source.locate([...path, '$ref']), path: `/${[...path, '$ref'].join('/')}` };
    if (/^[a-z][a-z\d+.-]*:/i.test(ref)) {
      context.problems.push({ ...at, message: `$ref '${ref}' is not a file path: schemas are files relative to the policy, never fetched` });
      return undefined;
    }
    const fragment = ref.indexOf('#');
    const refFile = resolve(context.baseDir, fragment < 0 ? ref : ref.slice(0, fragment));
    const key = pathToFileURL(refFile).href;
    let added = context.schemaFiles.get(refFile);
    if (added === undefined) {
      added = addSchemaFile(context, refFile, key, at);
      context.schemaFiles.set(refFile, added);
    }
    // A file that failed was reported where it was first referenced.
    if (!added) return undefined;
    resolved = { ...schema, $ref: fragment < 0 ? key : `${key}${ref.slice(fragment)}` };
  }
  const at = { ...source.locate(path), path: `/${path.join('/')}` };
  let validate: ValidateFunction;
  try {
    validate = context.ajv.compile(schemaBody(resolved));
  } catch (error) {
    context.problems.push({ ...at, message: `schema does not compile: ${(error as Error).message}` });
    return undefined;
  }
  try {
    // A $ref cycle that checks nothing on the way ({$ref: self.json}, {$ref: '#'}) compiles, then
    // overflows the stack on every call: found here rather than as a 500 on each request.
    validate({});
  } catch (error) {
    context.problems.push({ ...at, message: `schema cannot be evaluated (a $ref cycle?): ${(error as Error).message}` });
    return undefined;
  }
  return validate;
}

/** Reads a $ref'd schema file and gives it to ajv under its file: URL; false (and a problem) when it cannot. */
function addSchemaFile(context: SchemaContext, file: string, key: string, at: SourceLocation & { readonly path: string }): boolean {
  const source = readSource(file, context.problems, at);
  if (!source) return false;
  const unsafe = unsafeMatchers(source.data, source, []);
  if (unsafe.length > 0) {
    context.problems.push(...unsafe);
    return false;
  }
  if (!context.files.includes(file)) {
    context.files.push(file);
    context.hash.update('\0').update(source.text);
  }
  try {
    context.ajv.addSchema(schemaBody(source.data), key);
    return true;
  } catch (error) {
    context.problems.push({ ...at, message: `schema does not compile: ${file}: ${(error as Error).message}` });
    return false;
  }
}

/** A schema without $id and $schema: they are for editors, and an $id would clash across files. */
function schemaBody(schema: unknown): Record<string, unknown> | boolean {
  if (typeof schema === 'boolean') return schema;
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error('a schema is an object (or true or false)');
  const { $id, $schema, ...body } = schema as Record<string, unknown>;
  return body;
}

function checkEndpoints(raw: RawService, source: YamlSource, problems: PolicyProblem[]): void {
  const endpointPaths = new Set(raw.endpoints.map((endpoint) => endpoint.path));
  raw.endpoints.forEach((endpoint, index) => {
    const named = endpoint.method !== undefined;
    if ((endpoint.kind === 'rest') !== named) {
      problems.push({ ...source.locate(['endpoints', index]), path: `/endpoints/${index}`, message: endpoint.kind === 'rest' ? 'a rest endpoint must name its method' : 'only rest endpoints name a method' });
    } else if (named && !raw.methods?.[endpoint.method as string]) {
      problems.push({ ...source.locate(['endpoints', index, 'method']), path: `/endpoints/${index}/method`, message: `method '${endpoint.method}' is not listed under methods` });
    }
  });
  raw.public_routes.forEach((route, index) => {
    const path = route.slice(route.indexOf(' ') + 1);
    if (endpointPaths.has(path)) {
      problems.push({ ...source.locate(['public_routes', index]), path: `/public_routes/${index}`, message: `public route ${route} would expose a JSON-RPC endpoint without a token` });
    }
  });
}

/**
 * Each egress target's URL, as the policy or --service-url gives it, is an http(s) origin with an
 * optional path: the sidecar appends the path it sends to, and that joined URL is each proof's htu.
 * A user (password included) would go into every proof while the request went without it, a query
 * would swallow the path (the target would get '/', an endpoint the policy lists for no one), and
 * the target would refuse each call, sent again with a new token.
 */
function checkEgressTargets(raw: RawService, source: YamlSource, problems: PolicyProblem[], overridden: Readonly<Record<string, string>>): void {
  for (const [name, target] of Object.entries(raw.egress?.targets ?? {})) {
    const override = overridden[name];
    const url = override ?? target.url;
    const problem = targetUrlProblem(url);
    if (problem === undefined) continue;
    const where = override === undefined ? redactUrlUser(url) : `--service-url ${name}=${redactUrlUser(url)}`;
    problems.push({ ...source.locate(['egress', 'targets', name, 'url']), path: `/egress/targets/${name}/url`, message: `'${where}' ${problem}` });
  }
}

/**
 * The agent and the issuer, from the file or a flag. The forwarder keeps only the upstream's origin
 * (scheme, host, port), so a path, query or user given there would be dropped without a word and
 * every request sent somewhere else than the operator wrote. An issuer has no query, fragment or
 * user (RFC 8414 §2; OIDC Discovery §4 appends its well-known path), and `iss` is compared with
 * it as written, so one carrying them can match no token.
 */
function checkUpstreamAndIssuer(raw: RawService, source: YamlSource, problems: PolicyProblem[], overrides: PolicyOverrides): void {
  const checks = [
    { at: ['upstream'], flag: '--upstream', url: overrides.upstream ?? raw.upstream, overridden: overrides.upstream !== undefined, originOnly: true },
    { at: ['auth', 'issuer'], flag: '--issuer', url: overrides.issuer ?? raw.auth.issuer, overridden: overrides.issuer !== undefined, originOnly: false },
  ];
  for (const { at, flag, url, overridden, originOnly } of checks) {
    const problem = targetUrlProblem(url, originOnly);
    if (problem === undefined) continue;
    const where = overridden ? `${flag} ${redactUrlUser(url)}` : redactUrlUser(url);
    problems.push({ ...source.locate(at), path: `/${at.join('/')}`, message: `'${where}' ${problem}` });
  }
}

function targetUrlProblem(url: string, originOnly = false): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must be an http(s) URL';
  if (originOnly && (parsed.pathname !== '/' || /[?#@]/.test(url))) return 'must be an origin (http(s)://HOST:PORT), without a path, query, fragment or user: only the origin is used';
  if (parsed.username !== '' || parsed.password !== '' || /^[a-z]+:\/\/[^/]*@/i.test(url) || /[?#]/.test(url)) return 'must be an origin with an optional path, without a user, query or fragment';
  return undefined;
}

function checkTrustedProxies(raw: RawService, source: YamlSource, problems: PolicyProblem[], overridden: readonly string[]): void {
  raw.anomaly.trusted_proxies.forEach((entry, index) => {
    if (parseCidr(entry) === undefined) {
      problems.push({ ...source.locate(['anomaly', 'trusted_proxies', index]), path: `/anomaly/trusted_proxies/${index}`, message: `'${entry}' is not an IP address or CIDR` });
    }
  });
  for (const entry of overridden) {
    if (parseCidr(entry) === undefined) problems.push({ ...source.locate(['anomaly']), path: '/anomaly/trusted_proxies', message: `--trusted-proxy '${entry}' is not an IP address or CIDR` });
  }
}
