import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isPolicyLoadError, formatProblem } from '../errors.js';
import { loadPolicy } from '../load.js';
import type { ValidateFunction } from 'ajv';
import type { AnomalyPolicy, AuthPolicy, EgressPolicy, EndpointPolicy, IntegrityMode, IntegrityPolicy, LimitsPolicy, RateLimitRule, ServicePolicy } from '../model.js';
import { readYamlSource } from '../yaml-source.js';
import { parseCommandArgs, pickFormat, processIo, usageError, type Io } from './io.js';
import { loadRolesOnly, withRoles } from './load-roles.js';
import { accessMatrix, grants, type Cell } from './matrix.js';
import { loadServices } from './services.js';
import { renderTable } from './table.js';

/** One role's access to one method or tool that differs between the two versions. */
export interface GrantChange {
  readonly service: string;
  readonly role: string;
  readonly kind: 'method' | 'tool';
  readonly name: string;
  readonly old: Cell;
  readonly new: Cell;
  /**
   * gained: now callable, by the role alone or with another role (a deny removed), or with any
   * arguments (a restriction removed); lost: the other way round; changed: neither, but differently.
   */
  readonly change: 'gained' | 'lost' | 'changed';
  /** Set when the cell is the same on both sides but what it allows is not: `arguments` (allow-args). */
  readonly detail?: 'arguments';
}

/**
 * A service switched between `enforce` and `dry-run`: to dry-run, every role gains every call the
 * matrix refuses (it is forwarded), so the switch counts as a gain and fails --exit-code like one.
 */
export interface ModeChange {
  readonly service: string;
  readonly role: '*';
  readonly kind: 'mode';
  readonly name: 'mode';
  readonly old: ServicePolicy['mode'];
  readonly new: ServicePolicy['mode'];
  readonly change: 'gained' | 'lost';
}

/**
 * What guards a call besides the roles, changed for every role: a method's params schema, a
 * tool's arguments schema (`schema` or `none`; removed is a gain: anything reaches the agent), or
 * a method's integrity mode, its own or the service's it inherits (relaxed is a gain: a call
 * without a proof is forwarded).
 */
export interface GuardChange {
  readonly service: string;
  readonly role: '*';
  readonly kind: 'params' | 'arguments' | 'integrity';
  /** The method (params, integrity) or the tool (arguments). */
  readonly name: string;
  readonly old: string;
  readonly new: string;
  readonly change: 'gained' | 'lost' | 'changed';
}

/**
 * A service only one version holds (a service policy added or removed), for every role; old and
 * new are its mode or `-` (absent). Added, calls are forwarded to a service that was not served:
 * a gain; removed, a loss. What it serves follows on lines of their own: its public routes,
 * endpoints, egress and grants, each against nothing.
 */
export interface ServiceChange {
  readonly service: string;
  readonly role: '*';
  readonly kind: 'service';
  readonly name: 'added' | 'removed';
  readonly old: ServicePolicy['mode'] | '-';
  readonly new: ServicePolicy['mode'] | '-';
  readonly change: 'gained' | 'lost';
}

/**
 * A route added to or removed from `public_routes`: made public, it is forwarded without a
 * token, so a caller holding none (anonymous) gains it; made private again, a loss. `-`: the
 * version does not hold the service.
 */
export interface PublicRouteChange {
  readonly service: string;
  readonly role: 'anonymous';
  readonly kind: 'public_route';
  /** 'GET /health'. */
  readonly name: string;
  readonly old: 'token' | 'public' | '-';
  readonly new: 'token' | 'public' | '-';
  readonly change: 'gained' | 'lost';
}

/**
 * A field of `auth` changed (name: its key in the policy), for every role. Gained: tokens are
 * accepted that were refused: an algorithm added (one line per algorithm, `algorithms PS256`,
 * refused → accepted), a token type added (`token_types.header application/jwt`,
 * `token_types.claim Bearer`), a larger clock_tolerance_seconds (expired tokens accepted longer) or
 * jwks_cache_max_age_seconds (a key the issuer withdrew verifies longer). Lost: the other way
 * round. Changed: which tokens are accepted, not how many (issuer, audience, jwks_uri,
 * roles_claim), or how keys are fetched and tokens cached (jwks_cooldown_seconds,
 * jwks_timeout_ms, token_cache_size: a cached token is still checked for revocation).
 */
export interface AuthChange {
  readonly service: string;
  readonly role: '*';
  readonly kind: 'auth';
  readonly name: string;
  readonly old: string;
  readonly new: string;
  readonly change: 'gained' | 'lost' | 'changed';
}

/**
 * An entry of `endpoints` (name: its path) added, removed or changed, for every role; old and new
 * say what it takes (`jsonrpc`, `call_tool`, `rest POST get_document`) or `-` (none). Added: the
 * path was refused (404) and now forwards calls to the agent, a gain; removed, a loss; what it
 * takes changed (its kind, its rest method or HTTP method): changed.
 */
export interface EndpointChange {
  readonly service: string;
  readonly role: '*';
  readonly kind: 'endpoint';
  readonly name: string;
  readonly old: string;
  readonly new: string;
  readonly change: 'gained' | 'lost' | 'changed';
}

/**
 * A field of a section of the service policy changed (kind: the section, name: the field's key
 * there), for every role unless `role` names one. old and new are the values as the policy
 * writes them, or say what an entry of a list does (`refused`, `accepted`).
 */
export interface SettingChange<Kind extends string, Role extends string = '*'> {
  readonly service: string;
  readonly role: Role;
  readonly kind: Kind;
  readonly name: string;
  readonly old: string;
  readonly new: string;
  readonly change: 'gained' | 'lost' | 'changed';
}

/**
 * A field of `integrity` besides `dpop` (compared per method, as GuardChange `integrity`).
 * Gained: proofs or tokens are accepted that were refused: a proof algorithm added (one line per
 * algorithm, `algorithms ES512`, refused → accepted), a larger proof_max_age_seconds or
 * leeway_seconds, require_bound_tokens turned off (tokens without cnf.jkt accepted), or
 * replay_store_failure `allow` (while the one-time-id store is down, a replayed proof is
 * forwarded). Lost: the other way round.
 */
export type DpopChange = SettingChange<'dpop'>;

/**
 * A field of `rate_limit` changed, or a method's own `rate_limit`. A budget reads
 * `points/window_secondss` (`300/60s`). Gained: more requests let through: `enabled` turned
 * off, or a budget with more points and no fewer a second over time (points ÷ window_seconds),
 * or as many points and more a second; lost: fewer of both; changed: more of one, fewer of the
 * other (`300/60s → 600/600s`). name: `enabled`, `default` (the service's points and
 * window_seconds, the budget of every role without its own), `per_role` (role: the role; a role
 * without one has the default's, `300/60s (default)`) or `method NAME` (for every role; without
 * one the method's calls spend from the caller's budget, `(caller's budget)`, the gain or loss
 * judged against the default and every per_role budget, changed unless all agree).
 */
export type RateLimitChange = SettingChange<'rate_limit', string>;

/**
 * A field of `limits` changed, for every role. Gained: a larger max_body_bytes, max_depth,
 * max_batch or max_client_connections (more reaches the agent, or more is held open at once);
 * lost: smaller. Changed: the timeouts and upstream_max_connections, which say how long the
 * sidecar waits and how many connections it opens to its agent rather than what it lets in.
 */
export type LimitsChange = SettingChange<'limits'>;

/**
 * A field of `anomaly` (the stolen-token alarm) changed, for every role. Gained: a stolen token
 * goes unnoticed or unrevoked longer: the alarm turned off, auto_revoke turned off, a larger
 * max_sources or a shorter window_seconds (fewer addresses seen together), or a trusted proxy
 * added (one line per entry, `trusted_proxies 10.0.0.0/8`, untrusted → trusted: the
 * X-Forwarded-For entries that peer passes on are believed, for the alarm and as client_ip in
 * the audit). Lost: the other way round.
 */
export type AnomalyChange = SettingChange<'anomaly'>;

/**
 * Where calls are forwarded (`upstream`) or whose metrics the admin /metrics also serves
 * (`upstream_metrics_path`, `-` when absent) changed, for every role: neither lets more or less
 * in, so always changed. name: the key, shown once.
 */
export type UpstreamChange = SettingChange<'upstream' | 'upstream_metrics_path'>;

/**
 * What the service's own agent may call out through its sidecar's egress listener changed (role
 * `agent`: the caller is the agent behind the sidecar, not a role). name: `client_id` and
 * `timeout_ms` (changed; `-` without an egress section), a target's name (its url: added, a
 * gain; removed, a loss; another url, changed), then one line per path, method and tool it may
 * call there (`extractor method extract_document`, refused → allowed): added (with its target
 * too), a gain; removed, a loss.
 */
export type EgressChange = SettingChange<'egress', 'agent'>;

/**
 * `audit.granted` changed, for every role: turned off, the calls a role was let through leave no
 * audit line (refusals still do), so a caller's use of what it was granted goes unrecorded: a
 * gain, as anomaly's alarm turned off is; turned on, a loss.
 */
export type AuditChange = SettingChange<'audit'>;

export type PolicyChange = ServiceChange | GrantChange | ModeChange | GuardChange | PublicRouteChange | AuthChange | EndpointChange | DpopChange | RateLimitChange | LimitsChange | AnomalyChange | AuditChange | UpstreamChange | EgressChange;

/**
 * The changes between two sets of service policies, paired by service name; several files of
 * one side serving the same name are paired by file name, each shown as `service (file)`.
 */
export function diffServices(before: readonly ServicePolicy[], after: readonly ServicePolicy[]): PolicyChange[] {
  const changes: PolicyChange[] = [];
  const key = (policy: ServicePolicy): string => [before, after].some((side) => side.filter((other) => other.service === policy.service).length > 1)
    ? `${policy.service} (${basename(policy.files[0] ?? '')})`
    : policy.service;
  const names = [...new Set([...before, ...after].map(key))].sort();
  for (const service of names) {
    const oldPolicy = before.find((policy) => key(policy) === service);
    const newPolicy = after.find((policy) => key(policy) === service);
    if (oldPolicy && newPolicy && oldPolicy.mode !== newPolicy.mode) {
      changes.push({ service, role: '*', kind: 'mode', name: 'mode', old: oldPolicy.mode, new: newPolicy.mode, change: newPolicy.mode === 'dry-run' ? 'gained' : 'lost' });
    }
    if (!oldPolicy || !newPolicy) {
      // One side only (the name came from a side): its settings have nothing to be compared
      // with, what it lets in or reaches does.
      changes.push(
        { service, role: '*', kind: 'service', name: newPolicy ? 'added' : 'removed', old: oldPolicy?.mode ?? '-', new: newPolicy?.mode ?? '-', change: newPolicy ? 'gained' : 'lost' },
        ...publicRouteChanges(service, oldPolicy, newPolicy),
        ...endpointChanges(service, oldPolicy, newPolicy),
        ...egressChanges(service, oldPolicy?.egress, newPolicy?.egress),
      );
    }
    if (oldPolicy && newPolicy) {
      changes.push(
        ...publicRouteChanges(service, oldPolicy, newPolicy),
        ...authChanges(service, oldPolicy.auth, newPolicy.auth),
        ...endpointChanges(service, oldPolicy, newPolicy),
        ...guardChanges(service, oldPolicy, newPolicy),
        ...dpopChanges(service, oldPolicy.integrity, newPolicy.integrity),
        ...rateLimitChanges(service, oldPolicy, newPolicy),
        ...numberChanges({ service, role: '*', kind: 'limits' }, oldPolicy.limits, newPolicy.limits, LIMITS),
        ...anomalyChanges(service, oldPolicy.anomaly, newPolicy.anomaly),
        ...valueChange({ service, role: '*', kind: 'audit' }, 'granted', String(oldPolicy.audit.granted), String(newPolicy.audit.granted), 'false'),
        ...valueChange({ service, role: '*', kind: 'upstream' }, 'upstream', oldPolicy.upstream, newPolicy.upstream),
        ...valueChange({ service, role: '*', kind: 'upstream_metrics_path' }, 'upstream_metrics_path', oldPolicy.upstreamMetricsPath ?? '-', newPolicy.upstreamMetricsPath ?? '-'),
        ...egressChanges(service, oldPolicy.egress, newPolicy.egress),
      );
    }
    const oldMatrix = matrixOf(oldPolicy);
    const newMatrix = matrixOf(newPolicy);
    const rows = new Map<string, { kind: 'method' | 'tool'; name: string }>();
    for (const row of [...oldMatrix.rows, ...newMatrix.rows]) rows.set(`${row.kind} ${row.name}`, { kind: row.kind, name: row.name });
    const roles = [...new Set([...oldMatrix.roles, ...newMatrix.roles])];
    for (const [key, { kind, name }] of rows) {
      for (const role of roles) {
        const oldCell = oldMatrix.cells.get(key)?.[role] ?? 'none';
        const newCell = newMatrix.cells.get(key)?.[role] ?? 'none';
        if (oldCell === newCell) {
          // allow-args on both sides: the restriction itself may have changed (widened or narrowed).
          if (oldCell === 'allow-args' && argumentsOf(oldPolicy, role, name) !== argumentsOf(newPolicy, role, name)) {
            changes.push({ service, role, kind, name, old: oldCell, new: newCell, change: 'changed', detail: 'arguments' });
          }
          continue;
        }
        // A deny also refuses the call to a caller holding another role that grants it.
        const grantedByOther = (matrix: typeof oldMatrix): boolean => roles.some((other) => other !== role && grants(matrix.cells.get(key)?.[other] ?? 'none'));
        changes.push({ service, role, kind, name, old: oldCell, new: newCell, change: cellChange(oldCell, newCell, grantedByOther(oldMatrix), grantedByOther(newMatrix)) });
      }
    }
  }
  return changes;
}

/**
 * Gained: holders of the role may now make calls they could not: granted at all, or an argument
 * restriction dropped, or a deny dropped while another role grants the call (a caller holding
 * both was refused). Lost: the other way round. Changed: neither (a deny no role's grant met).
 */
function cellChange(old: Cell, now: Cell, grantedByOtherBefore: boolean, grantedByOtherAfter: boolean): GrantChange['change'] {
  if (grants(old) !== grants(now)) return grants(now) ? 'gained' : 'lost';
  if (old === 'allow-args' && now === 'allow') return 'gained';
  if (old === 'allow' && now === 'allow-args') return 'lost';
  if (old === 'deny' && grantedByOtherAfter) return 'gained';
  if (now === 'deny' && grantedByOtherBefore) return 'lost';
  return 'changed';
}

/** The role's argument restriction on a tool, as JSON, for comparison. */
function argumentsOf(policy: ServicePolicy | undefined, role: string, tool: string): string | undefined {
  return schemaText(policy?.roles.get(role)?.toolArguments.get(tool));
}

/**
 * The routes made public (a gain for callers without a token) or private again (a loss); a
 * version without the service (undefined) has none, shown `-`. A HEAD request also passes as the
 * GET route of its path (layers/route.ts), so `HEAD /p` listed or dropped beside a public
 * `GET /p` changes nothing.
 */
function publicRouteChanges(service: string, before: ServicePolicy | undefined, after: ServicePolicy | undefined): PublicRouteChange[] {
  const isPublic = (policy: ServicePolicy | undefined, route: string): boolean => policy !== undefined && (policy.publicRoutes.has(route) || (route.startsWith('HEAD ') && policy.publicRoutes.has(`GET ${route.slice('HEAD '.length)}`)));
  const unlisted = (policy: ServicePolicy | undefined): 'token' | '-' => policy === undefined ? '-' : 'token';
  const routes = [...new Set([...before?.publicRoutes ?? [], ...after?.publicRoutes ?? []])].sort();
  return routes.filter((route) => isPublic(before, route) !== isPublic(after, route)).map((route) => isPublic(after, route)
    ? { service, role: 'anonymous', kind: 'public_route', name: route, old: unlisted(before), new: 'public', change: 'gained' }
    : { service, role: 'anonymous', kind: 'public_route', name: route, old: 'public', new: unlisted(after), change: 'lost' });
}

/** Where a SettingChange is: its service, role and section. */
type Setting<Kind extends string, Role extends string> = Pick<SettingChange<Kind, Role>, 'service' | 'role' | 'kind'>;

/** A numeric field of a section: its key in the policy, its value, and what a larger value is (a smaller one: the reverse). */
interface NumberField<T> {
  readonly key: string;
  readonly value: (section: T) => number;
  readonly larger: 'gained' | 'lost' | 'changed';
}

/** Each numeric field whose value differs, as a gain, a loss or a change by its `larger`. */
function numberChanges<T, Kind extends string, Role extends string>(at: Setting<Kind, Role>, before: T, after: T, fields: readonly NumberField<T>[]): SettingChange<Kind, Role>[] {
  const changes: SettingChange<Kind, Role>[] = [];
  for (const { key, value, larger } of fields) {
    const old = value(before);
    const now = value(after);
    if (old === now) continue;
    const change = larger === 'changed' || now > old ? larger : larger === 'gained' ? 'lost' : 'gained';
    changes.push({ ...at, name: key, old: String(old), new: String(now), change });
  }
  return changes;
}

/**
 * One line per entry added to or removed from a list (name: `KEY ENTRY`, old and new the words
 * for an entry absent and present): added is `added`, removed the reverse.
 */
function entryChanges<Kind extends string, Role extends string>(at: Setting<Kind, Role>, key: string, before: Iterable<string>, after: Iterable<string>, words: readonly [absent: string, present: string], added: 'gained' | 'lost'): SettingChange<Kind, Role>[] {
  const was = new Set(before);
  const is = new Set(after);
  const [absent, present] = words;
  return [...new Set([...was, ...is])].sort().filter((entry) => was.has(entry) !== is.has(entry)).map((entry) => is.has(entry)
    ? { ...at, name: `${key} ${entry}`, old: absent, new: present, change: added }
    : { ...at, name: `${key} ${entry}`, old: present, new: absent, change: added === 'gained' ? 'lost' : 'gained' });
}

/** A field whose value differs: a gain when it became `looser`, a loss when it was, else changed. */
function valueChange<Kind extends string, Role extends string>(at: Setting<Kind, Role>, key: string, old: string, now: string, looser?: string): SettingChange<Kind, Role>[] {
  if (old === now) return [];
  return [{ ...at, name: key, old, new: now, change: looser === undefined ? 'changed' : now === looser ? 'gained' : old === looser ? 'lost' : 'changed' }];
}

/** The fields of `auth` that say which tokens are accepted, not how many: any change is `changed`. */
const AUTH_IDENTITY: readonly { readonly field: 'issuer' | 'audience' | 'jwksUri' | 'rolesClaim'; readonly key: string }[] = [
  { field: 'issuer', key: 'issuer' },
  { field: 'audience', key: 'audience' },
  { field: 'jwksUri', key: 'jwks_uri' },
  { field: 'rolesClaim', key: 'roles_claim' },
];

const AUTH_NUMBERS: readonly NumberField<AuthPolicy>[] = [
  { key: 'clock_tolerance_seconds', value: (auth) => auth.clockToleranceSeconds, larger: 'gained' },
  { key: 'jwks_cache_max_age_seconds', value: (auth) => auth.jwksCacheMaxAgeSeconds, larger: 'gained' },
  { key: 'jwks_cooldown_seconds', value: (auth) => auth.jwksCooldownSeconds, larger: 'changed' },
  { key: 'jwks_timeout_ms', value: (auth) => auth.jwksTimeoutMs, larger: 'changed' },
  { key: 'token_cache_size', value: (auth) => auth.tokenCacheSize, larger: 'changed' },
];

/** The `auth` changes: each algorithm or token type added (a gain) or removed (a loss), then each other field. */
function authChanges(service: string, before: AuthPolicy, after: AuthPolicy): AuthChange[] {
  const at = { service, role: '*', kind: 'auth' } as const;
  const text = (value: string | readonly string[] | undefined): string => value === undefined ? '(discovery)' : typeof value === 'string' ? value : value.join('.');
  return [
    ...entryChanges(at, 'algorithms', before.algorithms, after.algorithms, ['refused', 'accepted'], 'gained'),
    ...entryChanges(at, 'token_types.header', before.tokenTypes.header, after.tokenTypes.header, ['refused', 'accepted'], 'gained'),
    ...entryChanges(at, 'token_types.claim', before.tokenTypes.claim, after.tokenTypes.claim, ['refused', 'accepted'], 'gained'),
    ...AUTH_IDENTITY.flatMap(({ field, key }) => valueChange(at, key, text(before[field]), text(after[field]))),
    ...numberChanges(at, before, after, AUTH_NUMBERS),
  ];
}

const DPOP_NUMBERS: readonly NumberField<IntegrityPolicy>[] = [
  { key: 'proof_max_age_seconds', value: (integrity) => integrity.proofMaxAgeSeconds, larger: 'gained' },
  { key: 'leeway_seconds', value: (integrity) => integrity.leewaySeconds, larger: 'gained' },
];

/** The `integrity` changes besides `dpop`: each proof algorithm added or removed, then each other field. */
function dpopChanges(service: string, before: IntegrityPolicy, after: IntegrityPolicy): DpopChange[] {
  const at = { service, role: '*', kind: 'dpop' } as const;
  return [
    ...entryChanges(at, 'algorithms', before.algorithms, after.algorithms, ['refused', 'accepted'], 'gained'),
    ...numberChanges(at, before, after, DPOP_NUMBERS),
    ...valueChange(at, 'require_bound_tokens', String(before.requireBoundTokens), String(after.requireBoundTokens), 'false'),
    ...valueChange(at, 'replay_store_failure', before.replayStoreFailure, after.replayStoreFailure, 'allow'),
  ];
}

/** The fields of `limits`, in the schema's order. */
const LIMITS: readonly NumberField<LimitsPolicy>[] = [
  { key: 'max_body_bytes', value: (limits) => limits.maxBodyBytes, larger: 'gained' },
  { key: 'max_buffered_body_bytes', value: (limits) => limits.maxBufferedBodyBytes, larger: 'gained' },
  { key: 'max_depth', value: (limits) => limits.maxDepth, larger: 'gained' },
  { key: 'max_batch', value: (limits) => limits.maxBatch, larger: 'gained' },
  { key: 'headers_timeout_ms', value: (limits) => limits.headersTimeoutMs, larger: 'changed' },
  { key: 'request_timeout_ms', value: (limits) => limits.requestTimeoutMs, larger: 'changed' },
  { key: 'max_client_connections', value: (limits) => limits.maxClientConnections, larger: 'gained' },
  { key: 'keep_alive_timeout_ms', value: (limits) => limits.keepAliveTimeoutMs, larger: 'changed' },
  { key: 'upstream_connect_timeout_ms', value: (limits) => limits.upstreamConnectTimeoutMs, larger: 'changed' },
  { key: 'upstream_timeout_ms', value: (limits) => limits.upstreamTimeoutMs, larger: 'changed' },
  { key: 'idle_timeout_ms', value: (limits) => limits.idleTimeoutMs, larger: 'changed' },
  { key: 'upstream_max_connections', value: (limits) => limits.upstreamMaxConnections, larger: 'changed' },
];

const ANOMALY_NUMBERS: readonly NumberField<AnomalyPolicy>[] = [
  { key: 'max_sources', value: (anomaly) => anomaly.maxSources, larger: 'gained' },
  // Addresses remembered longer: more of them seen together, the alarm raised sooner.
  { key: 'window_seconds', value: (anomaly) => anomaly.windowSeconds, larger: 'lost' },
];

/** The `anomaly` changes: enabled, each trusted proxy added or removed, then the other fields. */
function anomalyChanges(service: string, before: AnomalyPolicy, after: AnomalyPolicy): AnomalyChange[] {
  const at = { service, role: '*', kind: 'anomaly' } as const;
  return [
    ...valueChange(at, 'enabled', String(before.enabled), String(after.enabled), 'false'),
    ...entryChanges(at, 'trusted_proxies', before.trustedProxies, after.trustedProxies, ['untrusted', 'trusted'], 'gained'),
    ...numberChanges(at, before, after, ANOMALY_NUMBERS),
    ...valueChange(at, 'auto_revoke', String(before.autoRevoke), String(after.autoRevoke), 'false'),
  ];
}

/** The `egress` changes: client_id, timeout_ms, then each target (by name): its url, and each path, method and tool it may be called for. */
function egressChanges(service: string, before: EgressPolicy | undefined, after: EgressPolicy | undefined): EgressChange[] {
  const at = { service, role: 'agent', kind: 'egress' } as const;
  const changes: EgressChange[] = [
    ...valueChange(at, 'client_id', before?.clientId ?? '-', after?.clientId ?? '-'),
    ...valueChange(at, 'timeout_ms', String(before?.timeoutMs ?? '-'), String(after?.timeoutMs ?? '-')),
  ];
  const words = ['refused', 'allowed'] as const;
  for (const name of [...new Set([...before?.targets.keys() ?? [], ...after?.targets.keys() ?? []])].sort()) {
    const old = before?.targets.get(name);
    const now = after?.targets.get(name);
    if (old?.url !== now?.url) changes.push({ ...at, name, old: old?.url ?? '-', new: now?.url ?? '-', change: old === undefined ? 'gained' : now === undefined ? 'lost' : 'changed' });
    changes.push(
      ...entryChanges(at, `${name} path`, old?.paths ?? [], now?.paths ?? [], words, 'gained'),
      ...entryChanges(at, `${name} method`, old?.methods ?? [], now?.methods ?? [], words, 'gained'),
      ...entryChanges(at, `${name} tool`, old?.tools ?? [], now?.tools ?? [], words, 'gained'),
    );
  }
  return changes;
}

const ruleText = (rule: RateLimitRule): string => `${rule.points}/${rule.windowSeconds}s`;
const sameRule = (a: RateLimitRule | undefined, b: RateLimitRule | undefined): boolean => a?.points === b?.points && a?.windowSeconds === b?.windowSeconds;

/** More points and no fewer a second over time: gained; fewer and no more: lost; else changed (the same rule too). */
function ruleChange(old: RateLimitRule, now: RateLimitRule): SettingChange<string>['change'] {
  const points = Math.sign(now.points - old.points);
  const rate = Math.sign(now.points * old.windowSeconds - old.points * now.windowSeconds);
  if (points >= 0 && rate >= 0 && points + rate > 0) return 'gained';
  if (points <= 0 && rate <= 0 && points + rate < 0) return 'lost';
  return 'changed';
}

/** The budgets a call without a method budget of its own may spend from: the default and each role's. */
const callerBudgets = (policy: ServicePolicy): RateLimitRule[] => [policy.rateLimit.defaultRule, ...policy.rateLimit.perRole.values()];

/** A change every caller makes alike: the one they all agree on, else changed. */
const agreed = (changes: readonly SettingChange<string>['change'][]): SettingChange<string>['change'] => changes.every((change) => change === changes[0]) ? changes[0] ?? 'changed' : 'changed';

/** The `rate_limit` changes: enabled, the default, each role's budget, then each method's (for the methods both versions serve). */
function rateLimitChanges(service: string, before: ServicePolicy, after: ServicePolicy): RateLimitChange[] {
  const at = { service, role: '*', kind: 'rate_limit' } as const;
  const changes: RateLimitChange[] = [...valueChange(at, 'enabled', String(before.rateLimit.enabled), String(after.rateLimit.enabled), 'false')];
  const [oldDefault, newDefault] = [before.rateLimit.defaultRule, after.rateLimit.defaultRule];
  if (!sameRule(oldDefault, newDefault)) changes.push({ ...at, name: 'default', old: ruleText(oldDefault), new: ruleText(newDefault), change: ruleChange(oldDefault, newDefault) });
  for (const role of [...new Set([...before.rateLimit.perRole.keys(), ...after.rateLimit.perRole.keys()])].sort()) {
    const old = before.rateLimit.perRole.get(role);
    const now = after.rateLimit.perRole.get(role);
    if (sameRule(old, now)) continue;
    const text = (rule: RateLimitRule | undefined, fallback: RateLimitRule): string => rule ? ruleText(rule) : `${ruleText(fallback)} (default)`;
    changes.push({ ...at, role, name: 'per_role', old: text(old, oldDefault), new: text(now, newDefault), change: ruleChange(old ?? oldDefault, now ?? newDefault) });
  }
  for (const [name, method] of after.methods) {
    if (!before.methods.has(name)) continue;
    const old = before.methods.get(name)?.rateLimit;
    const now = method.rateLimit;
    if (sameRule(old, now)) continue;
    // Without a budget of its own, the method's calls spend from the caller's: compared with each
    // (old and now are not both absent: that is the same rule).
    const change = old === undefined ? agreed(callerBudgets(before).map((budget) => ruleChange(budget, now as RateLimitRule)))
      : now === undefined ? agreed(callerBudgets(after).map((budget) => ruleChange(old, budget)))
      : ruleChange(old, now);
    const text = (rule: RateLimitRule | undefined): string => rule ? ruleText(rule) : "(caller's budget)";
    changes.push({ ...at, name: `method ${name}`, old: text(old), new: text(now), change });
  }
  return changes;
}

/** The endpoints added (a gain: calls to the path are forwarded), removed (a loss) or changed; a version without the service (undefined) has none. */
function endpointChanges(service: string, before: ServicePolicy | undefined, after: ServicePolicy | undefined): EndpointChange[] {
  const takes = (endpoint: EndpointPolicy | undefined): string => endpoint === undefined ? '-' : endpoint.kind === 'rest' ? `rest ${endpoint.httpMethod} ${endpoint.method ?? ''}` : endpoint.kind;
  const changes: EndpointChange[] = [];
  for (const path of [...new Set([...before?.endpoints.keys() ?? [], ...after?.endpoints.keys() ?? []])].sort()) {
    const old = before?.endpoints.get(path);
    const now = after?.endpoints.get(path);
    if (takes(old) === takes(now)) continue;
    changes.push({ service, role: '*', kind: 'endpoint', name: path, old: takes(old), new: takes(now), change: old === undefined ? 'gained' : now === undefined ? 'lost' : 'changed' });
  }
  return changes;
}

const STRICTNESS: Record<IntegrityMode, number> = { off: 0, optional: 1, required: 2 };

/** The params, arguments and integrity changes of the methods and tools both versions serve. */
function guardChanges(service: string, before: ServicePolicy, after: ServicePolicy): GuardChange[] {
  const changes: GuardChange[] = [];
  const schema = (kind: 'params' | 'arguments', name: string, old: ValidateFunction | undefined, now: ValidateFunction | undefined): void => {
    if (old === undefined && now === undefined) return;
    if (old !== undefined && now !== undefined) {
      if (schemaText(old) !== schemaText(now)) changes.push({ service, role: '*', kind, name, old: 'schema', new: 'schema', change: 'changed' });
      return;
    }
    changes.push({ service, role: '*', kind, name, old: old ? 'schema' : 'none', new: now ? 'schema' : 'none', change: now ? 'lost' : 'gained' });
  };
  for (const [name, method] of after.methods) {
    const old = before.methods.get(name);
    if (!old) continue;
    schema('params', name, old.validateParams, method.validateParams);
    const oldMode = old.integrity ?? before.integrity.dpop;
    const newMode = method.integrity ?? after.integrity.dpop;
    if (oldMode !== newMode) changes.push({ service, role: '*', kind: 'integrity', name, old: oldMode, new: newMode, change: STRICTNESS[newMode] < STRICTNESS[oldMode] ? 'gained' : 'lost' });
  }
  for (const [name, tool] of after.tools) {
    const old = before.tools.get(name);
    if (old) schema('arguments', name, old.validateArguments, tool.validateArguments);
  }
  return changes;
}

/**
 * A compiled schema as JSON, for comparison: a $ref'd schema file (a file: URL, different for
 * the two versions' directories) is replaced by what that file holds.
 */
function schemaText(validate: ValidateFunction | undefined): string | undefined {
  if (validate === undefined) return undefined;
  return JSON.stringify(validate.schema, (key, value: unknown) => {
    if (key !== '$ref' || typeof value !== 'string' || !value.startsWith('file:')) return value;
    const hash = value.indexOf('#');
    return { file: readYamlSource(fileURLToPath(hash < 0 ? value : value.slice(0, hash))).data, fragment: hash < 0 ? '' : value.slice(hash) };
  });
}

function matrixOf(policy: ServicePolicy | undefined): { roles: readonly string[]; rows: { kind: 'method' | 'tool'; name: string }[]; cells: Map<string, Readonly<Record<string, Cell>>> } {
  if (!policy) return { roles: [], rows: [], cells: new Map() };
  const matrix = accessMatrix(policy);
  return { roles: matrix.roles, rows: [...matrix.rows], cells: new Map(matrix.rows.map((row) => [`${row.kind} ${row.name}`, row.cells])) };
}

/**
 * Loads one side of a diff: a directory (every service under it), a service policy file, or an
 * rbac file (paired with `services`, the service policies that reference the other side's
 * rbac, so both sides decide for the same methods). `REV:path` reads the path at a git revision.
 */
export function loadSide(spec: string, services?: readonly ServicePolicy[]): ServicePolicy[] {
  const path = resolve(spec);
  const kind = sideKind(path);
  if (kind === 'a directory') {
    const services = loadServices([path]);
    // A CI job pointed at the wrong directories would otherwise read 'no access changes'.
    if (services.length === 0) throw new Error(`no service policy under ${path}`);
    return services;
  }
  if (kind === 'an rbac file') {
    const roles = loadRolesOnly(path);
    return (services ?? servicesUsing(path)).map((policy) => withRoles(policy, roles));
  }
  return [loadPolicy(path)];
}

type SideKind = 'a directory' | 'an rbac file' | 'a service policy';

function sideKind(path: string): SideKind {
  if (statSync(path).isDirectory()) return 'a directory';
  const data = readYamlSource(path).data as { roles?: unknown } | undefined;
  return data !== undefined && typeof data === 'object' && data !== null && 'roles' in data ? 'an rbac file' : 'a service policy';
}

/**
 * OLD and NEW of one kind. A service policy against an rbac file compared the one service with
 * every service using the roles (the others 'added': 153 changes for no edit), a directory
 * against a file the services it holds with those of one file.
 */
function checkSameKind(oldPath: string, newPath: string): void {
  const [was, is] = [sideKind(resolve(oldPath)), sideKind(resolve(newPath))];
  if (was !== is) throw new Error(`OLD is ${was} and NEW ${is}: give two directories, two service policies or two rbac files`);
}

/** The service policies in the rbac file's directory tree that reference it (at least one). */
function servicesUsing(rbacFile: string): ServicePolicy[] {
  const users = loadServices([dirname(rbacFile)]).filter((policy) => policy.files[1] === rbacFile);
  // None would decide nothing and print 'no access changes', whatever the roles gained.
  if (users.length === 0) throw new Error(`no service policy under ${dirname(rbacFile)} uses ${rbacFile}: diff the policy directories instead`);
  return users;
}

/** `REV:path` → a temporary copy of path's top-level directory at that revision. */
function materialise(spec: string, temps: string[]): string {
  if (existsSync(spec)) return spec;
  const match = /^([^:]+):(.+)$/.exec(spec);
  if (!match) throw new Error(`no such file or directory: ${spec}`);
  const [, rev, path] = match as unknown as [string, string, string];
  const root = execFileSync('git', ['rev-parse', '--show-toplevel'], { encoding: 'utf8' }).trim();
  const top = path.replace(/^\.\//, '').split('/')[0] as string;
  const dir = mkdtempSync(join(tmpdir(), 'ca-a2a-diff-'));
  temps.push(dir);
  const files = execFileSync('git', ['-C', root, 'ls-tree', '-r', '--name-only', rev, '--', top], { encoding: 'utf8' }).split('\n').filter(Boolean);
  if (files.length === 0) throw new Error(`nothing at ${top} in revision ${rev}`);
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), execFileSync('git', ['-C', root, 'show', `${rev}:${file}`]));
  }
  return join(dir, path);
}

const HELP = `usage: ca-a2a policy diff OLD NEW [--format text|json|markdown] [--exit-code]

Which role gains or loses which method or tool; a service only one version holds, on a line
of its own (added, a gain; removed, a loss) followed by the public routes, endpoints and egress
it brings or takes away; and, for the services both versions hold, what else changed, each a
gain (loosened), a loss (tightened) or a change: the mode (to dry-run, a gain), a method's
params or a tool's arguments schema (removed, a gain), a method's integrity mode (relaxed, a
gain), public_routes (a route made public, a gain for callers without a token), endpoints
(added, a gain), auth and the rest of integrity (an algorithm added, a larger leeway or
replay_store_failure: allow, a gain), rate_limit (turned off or a larger budget, a gain),
limits (a larger body, depth, batch or connection limit, a gain; timeouts changed), anomaly
(the alarm turned off or a trusted proxy added, a gain), audit (granted turned off, a gain),
upstream (changed) and egress (a target, path, method or tool the agent may call out to, a
gain).
OLD and NEW are two directories (every service under them, paired by name), two service
policy files, or two rbac files (decided against the services that use NEW), never one of
each. Either may be
REV:PATH to read PATH at a git revision, e.g. ca-a2a policy diff HEAD~1:policies policies.
--exit-code: exit 1 when there are changes (as git diff --exit-code).
`;

const SYMBOL: Record<Cell, string> = { allow: 'allow', 'allow-args': 'allow*', deny: 'DENY', none: '-' };
const MARK = { gained: '+', lost: '-', changed: '~' } as const;

export async function diffCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, { format: { type: 'string' }, 'exit-code': { type: 'boolean' } }, HELP, io, 'diff');
  if ('exit' in args) return args.exit;
  const format = pickFormat(args.values.format, ['text', 'json', 'markdown'] as const, 'text');
  if (!format) return usageError(io, 'diff', `unknown format '${String(args.values.format)}'`, HELP);
  if (args.positionals.length !== 2) return usageError(io, 'diff', 'give OLD and NEW', HELP);
  const temps: string[] = [];
  let changes: PolicyChange[];
  try {
    const [oldPath, newPath] = args.positionals.map((spec) => materialise(spec, temps)) as [string, string];
    checkSameKind(oldPath, newPath);
    const after = loadSide(newPath);
    changes = diffServices(loadSide(oldPath, after), after);
  } catch (error) {
    io.err(`ca-a2a policy diff: ${isPolicyLoadError(error) ? `policy invalid (run policy check):\n${error.problems.map(formatProblem).join('\n')}` : (error as Error).message}\n`);
    return 2;
  } finally {
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  }
  io.out(renderChanges(changes, format));
  return changes.length > 0 && args.values['exit-code'] === true ? 1 : 0;
}

export function renderChanges(changes: readonly PolicyChange[], format: 'text' | 'json' | 'markdown'): string {
  if (format === 'json') return `${JSON.stringify(changes, null, 2)}\n`;
  const count = (kind: PolicyChange['change']): number => changes.filter((change) => change.change === kind).length;
  const summary = `${changes.length} change${changes.length === 1 ? '' : 's'}: ${count('gained')} gained, ${count('lost')} lost, ${count('changed')} changed`;
  if (changes.length === 0) return 'no access changes\n';
  const rows = changes.map((c) => c.kind === 'mode'
    ? [MARK[c.change], c.service, 'every role', 'mode', `${c.old} → ${c.new}`]
    : c.kind === 'public_route'
    ? [MARK[c.change], c.service, c.role, `${c.kind} ${c.name}`, `${c.old} → ${c.new}`]
    : c.kind !== 'method' && c.kind !== 'tool'
    ? [MARK[c.change], c.service, c.role === '*' ? 'every role' : c.role, c.name === c.kind ? c.kind : `${c.kind} ${c.name}`, `${c.old} → ${c.new}${c.change === 'changed' ? ' (changed)' : ''}`]
    : [MARK[c.change], c.service, c.role, `${c.kind} ${c.name}`, `${SYMBOL[c.old]} → ${SYMBOL[c.new]}${c.detail ? ` (${c.detail} changed)` : ''}`]);
  return renderTable(['', 'service', 'role', 'access', 'old → new'], rows, format === 'markdown' ? 'markdown' : 'table') + `${format === 'markdown' ? '\n' : ''}${summary}\n`;
}
