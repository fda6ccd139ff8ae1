import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';

/** What an answer other than success says: its HTTP status, stable code and, on /message, JSON-RPC code. */
export interface Outcome {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly rpcCode?: number;
}

/** Longest a value taken from the request is logged: a jti or subject the stores accept (200). */
const MAX_LOGGED = 200;
/** A compact JWS or JWE (its header starts `{"`, base64url `eyJ`), anywhere in a value: a whole token pasted where a jti belonged. */
const TOKEN_SHAPED = /eyJ[\w-]*\.[\w-]*\./;

/**
 * The log lines of one admin API request: who (the caller the sidecar names, the peer address),
 * what (route, JSON-RPC method, target), and the sidecar's request id, which its own audit line of
 * the same request carries with the client's address. Never a body, never a token.
 */
export class RequestLog {
  readonly requestId: string;
  readonly #logger: Pick<Logger, 'warn' | 'error'> | undefined;
  readonly #fields: Record<string, unknown>;

  constructor(req: IncomingMessage, logger: Pick<Logger, 'warn' | 'error'> | undefined) {
    this.#logger = logger;
    // Called some other way than through its sidecar, the request still gets an id to find it by.
    this.requestId = header(req, 'x-ca-a2a-request-id') ?? randomUUID();
    this.#fields = {
      request_id: this.requestId,
      subject: header(req, 'x-ca-a2a-subject'),
      client_id: header(req, 'x-ca-a2a-client-id'),
      source_ip: req.socket.remoteAddress,
      http_method: req.method,
      path: loggable((req.url ?? '/').split('?')[0]),
    };
  }

  /** The JSON-RPC method called on /message. */
  method(method: unknown): void {
    if (typeof method === 'string') this.#fields.method = loggable(method);
  }

  /** What a revocation request names, as far as it names it. */
  target(body: unknown): void {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
    const { jti, subject, before } = body as Record<string, unknown>;
    if (typeof jti === 'string') this.#fields.target_jti = loggable(jti);
    if (typeof subject === 'string') this.#fields.target_subject = loggable(subject);
    if (typeof before === 'string' || typeof before === 'number') this.#fields.target_before = loggable(String(before));
  }

  /** A refusal (4xx, or a JSON-RPC error for the caller to fix): nothing was done. */
  refused(outcome: Outcome): void {
    this.#logger?.warn({ event_type: 'admin_request_refused', ...this.#fields, ...outcomeFields(outcome) }, 'admin request refused');
  }

  /** A failure of the service or its store (5xx, -32017): nothing was done; `error` is only logged. */
  failed(outcome: Outcome, error: unknown, store?: 'revocation'): void {
    const err = error instanceof Error ? error.message : String(error);
    this.#logger?.error({ event_type: 'admin_request_failed', ...this.#fields, ...outcomeFields(outcome), ...(store ? { store } : {}), err }, 'admin request failed');
  }
}

function outcomeFields(outcome: Outcome): Record<string, unknown> {
  return { status: outcome.status, code: outcome.code, ...(outcome.rpcCode === undefined ? {} : { rpc_code: outcome.rpcCode }), reason: outcome.message };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' && value.length > 0 ? loggable(value) : undefined;
}

function loggable(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (TOKEN_SHAPED.test(value)) return '[token-shaped value not logged]';
  return value.length > MAX_LOGGED ? `${value.slice(0, MAX_LOGGED)}…` : value;
}
