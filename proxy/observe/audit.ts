import type { Logger } from 'pino';
import type { RequestContext } from '../context.js';
import { DENIALS, type Denial } from '../denials.js';

/**
 * Audit lines: one JSON object per security decision, with a stable `event_type`. The only
 * place that writes them. Never a whole token: the jti identifies it.
 */
export class AuditLog {
  readonly #logger: Logger;
  readonly #service: string;

  constructor(logger: Logger, service: string) {
    this.#logger = logger;
    this.#service = service;
  }

  /** A refusal (or a dry-run would-be refusal when `enforced` is false). */
  denied(ctx: RequestContext | undefined, denial: Denial, enforced = true): void {
    const row = DENIALS[denial.code];
    this.#logger.warn({
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
    this.#logger.info({ event_type: 'authorization', granted: true, ...requestFields(ctx) }, 'request authorized');
  }

  /** Any other security event (token_revoked, anomalous_token_usage, policy_reloaded…). */
  event(eventType: string, fields: Record<string, unknown>, message: string, level: 'info' | 'warn' | 'error' = 'info'): void {
    this.#logger[level]({ event_type: eventType, service: this.#service, ...fields }, message);
  }
}

function requestFields(ctx: RequestContext): Record<string, unknown> {
  const principal = ctx.principal;
  return {
    request_id: ctx.requestId,
    source_ip: ctx.sourceIp,
    policy_version: ctx.policy.version,
    http_method: ctx.req.method,
    path: ctx.path || undefined,
    method: ctx.calls.length > 0 ? ctx.calls.map((call) => call.method).join(',') : undefined,
    tool: ctx.calls.find((call) => call.tool !== undefined)?.tool,
    subject: principal?.subject,
    client_id: principal?.clientId,
    roles: principal?.roles,
    jti: principal?.jti,
  };
}
