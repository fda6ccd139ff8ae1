import type { Logger } from 'pino';
import type { Principal, RequestContext } from '../context.js';
import { DENIALS, type Denial } from '../denials.js';

/**
 * Audit lines: one JSON object per security decision, with a stable `event_type`. The only
 * place that writes them. Never a whole token: the jti identifies it.
 */
export class AuditLog {
  readonly #logger: Logger;
  readonly #service: string;
  /**
   * One pino child per verified caller, its fields serialised once: a principal is reused for as
   * long as its token is (the verified-token cache), and most of a granted line is the caller.
   */
  readonly #callers = new WeakMap<Principal, Logger>();

  constructor(logger: Logger, service: string) {
    this.#logger = logger;
    this.#service = service;
  }

  /** A refusal (or a dry-run would-be refusal when `enforced` is false). */
  denied(ctx: RequestContext | undefined, denial: Denial, enforced = true): void {
    const row = DENIALS[denial.code];
    this.#loggerFor(ctx).warn({
      event_type: row.event,
      ...(row.event === 'authorization' ? { granted: false } : {}),
      enforced,
      code: denial.code,
      status: row.status,
      reason: denial.detail ?? row.message,
      ...(ctx ? requestFields(ctx) : {}),
    }, 'request refused');
  }

  /** An authorization that passed (the seed's `authorization` event with granted: true). */
  granted(ctx: RequestContext): void {
    if (!this.#logger.isLevelEnabled('info')) return;
    this.#loggerFor(ctx).info({ event_type: 'authorization', granted: true, ...requestFields(ctx) }, 'request authorized');
  }

  /** Any other security event (token_revoked, anomalous_token_usage, policy_reloaded…). */
  event(eventType: string, fields: Record<string, unknown>, message: string, level: 'info' | 'warn' | 'error' = 'info'): void {
    this.#logger[level]({ event_type: eventType, service: this.#service, ...fields }, message);
  }

  #loggerFor(ctx: RequestContext | undefined): Logger {
    const principal = ctx?.principal;
    if (principal === undefined) return this.#logger;
    let caller = this.#callers.get(principal);
    if (caller === undefined) {
      caller = this.#logger.child({ subject: principal.subject, client_id: principal.clientId, roles: principal.roles, jti: principal.jti });
      this.#callers.set(principal, caller);
    }
    return caller;
  }
}

/** The request's own fields; the caller's (subject, client_id, roles, jti) come with its child logger. */
function requestFields(ctx: RequestContext): Record<string, unknown> {
  return {
    request_id: ctx.requestId,
    source_ip: ctx.sourceIp,
    policy_version: ctx.policy.version,
    http_method: ctx.req.method,
    path: ctx.path || undefined,
    method: ctx.calls.length > 0 ? ctx.calls.map((call) => call.method).join(',') : undefined,
    tool: ctx.calls.find((call) => call.tool !== undefined)?.tool,
  };
}
