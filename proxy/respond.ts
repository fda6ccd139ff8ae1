import type { ServerResponse } from 'node:http';
import type { JsonRpcId, Principal, RequestContext } from './context.js';
import { responseId } from './context.js';
import { DENIALS, type Denial } from './denials.js';
import type { AuditLog } from './observe/audit.js';
import type { SidecarMetrics } from './observe/metrics.js';

/** Writes one JSON-RPC error object as the whole response. */
export function writeRpcError(
  res: ServerResponse, status: number, id: JsonRpcId, error: { code: number; message: string; data?: unknown }, headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ jsonrpc: '2.0', id, error });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

/** The bounded `method` label: a method the policy names, 'batch', or 'other'. */
export function methodLabel(ctx: RequestContext): string {
  if (ctx.batch) return 'batch';
  const method = ctx.calls[0]?.method;
  if (method === undefined) return ctx.isPublic ? 'public' : 'none';
  return ctx.policy.methods.has(method) ? method : 'other';
}

/**
 * The single way a request is refused: JSON-RPC error body (detail for 4xx, generic for 5xx),
 * the denial counter with a bounded reason, the per-reason family counters, and the audit line.
 */
export class Refuser {
  readonly #metrics: SidecarMetrics;
  readonly #audit: AuditLog;
  readonly #service: string;

  constructor(metrics: SidecarMetrics, audit: AuditLog, service: string) {
    this.#metrics = metrics;
    this.#audit = audit;
    this.#service = service;
  }

  refuse(ctx: RequestContext | undefined, res: ServerResponse, denial: Denial): void {
    const row = DENIALS[denial.code];
    const exposed = row.status < 500;
    const message = exposed && denial.detail ? `${row.message}: ${denial.detail}` : row.message;
    const error = exposed && denial.data ? { code: row.rpcCode, message, data: { reason: denial.code, ...denial.data } } : { code: row.rpcCode, message, data: { reason: denial.code } };
    // The request id goes back with the refusal, as with a forwarded answer: the caller can quote
    // it, and it finds the refusal's audit line.
    const headers = ctx ? { ...denial.headers, 'x-ca-a2a-request-id': ctx.requestId } : denial.headers;
    writeRpcError(res, row.status, ctx ? responseId(ctx) : null, error, headers);
    this.count(ctx, denial);
    this.#audit.denied(ctx, denial);
  }

  /** Counts and logs without answering: dry-run would-deny, and refusals answered elsewhere. */
  count(ctx: RequestContext | undefined, denial: Denial): void {
    const row = DENIALS[denial.code];
    const service = this.#service;
    this.#metrics.denials.inc({ service, reason: denial.code, status: row.status });
    if (row.event === 'authentication_failure' || denial.code === 'authn.jwks_unavailable') {
      this.#metrics.authnFailures.inc({ service, reason: denial.code.slice(denial.code.indexOf('.') + 1) });
    }
    if (ctx && row.event === 'authorization') {
      for (const role of boundedRoles(ctx)) {
        this.#metrics.authzDecisions.inc({ service, method: methodLabel(ctx), role, decision: 'deny' });
      }
    }
    if (denial.code === 'ratelimit.exceeded' && ctx) this.#metrics.rateLimited.inc({ service, method: methodLabel(ctx) });
    if (denial.code === 'replay.duplicate_id') this.#metrics.replays.inc({ service });
    if (denial.code === 'authn.token_revoked') this.#metrics.revokedRefused.inc({ service });
  }

  /** Logs a dry-run refusal as not enforced; the request's one decision is counted where it is forwarded. */
  wouldDeny(ctx: RequestContext, denial: Denial): void {
    this.#audit.denied(ctx, denial, false);
  }
}

const NO_ROLE: readonly string[] = ['none'];
/** Per verified caller (a principal belongs to one policy version's token cache). */
const labelRoles = new WeakMap<Principal, readonly string[]>();

/** Roles as metric labels: only roles the RBAC file names, so a token cannot mint label values. */
export function boundedRoles(ctx: RequestContext): readonly string[] {
  const principal = ctx.principal;
  if (principal === undefined) return NO_ROLE;
  let roles = labelRoles.get(principal);
  if (roles === undefined) {
    const named = principal.roles.filter((role) => ctx.policy.roles.has(role));
    roles = named.length > 0 ? named : NO_ROLE;
    labelRoles.set(principal, roles);
  }
  return roles;
}
