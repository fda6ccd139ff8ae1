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
/** An HTTP authentication scheme and its credentials (RFC 9110 §11.4, token68): `Bearer …`, `Basic …`. */
const SCHEME_CREDENTIALS = /(?:^|[^A-Za-z0-9])(?:bearer|dpop|basic)\s+[\w.~+/-]{8}/i;
/** Shorter runs are identifiers: a UUID is 36 characters but no upper case, oidc-provider's jti 21. */
const MIN_OPAQUE_CREDENTIAL = 32;

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
    const message = error instanceof Error ? error.message : String(error);
    // A store's message can quote what it was given (PostgreSQL's "invalid input syntax … \"…\"").
    const err = tokenShaped(message) ? '[token-shaped value not logged]' : message;
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
  if (tokenShaped(value)) return '[token-shaped value not logged]';
  return value.length > MAX_LOGGED ? `${value.slice(0, MAX_LOGGED)}…` : value;
}

/**
 * Whether a value holds a credential anywhere, judged on the whole value before it is cut: a
 * scheme and its credentials, a compact JWS or JWE (or a part of one), an opaque secret. Runs are
 * scanned by hand in one pass: a regular expression looking for a run followed by a dot, or for a
 * run holding three classes of characters, backtracks quadratically on a long run without one.
 */
export function tokenShaped(value: string): boolean {
  if (SCHEME_CREDENTIALS.test(value)) return true;
  let start = 0;
  let classes = 0;
  for (let i = 0; i <= value.length; i++) {
    const code = i < value.length ? value.charCodeAt(i) : -1;
    const kind = characterClass(code);
    if (kind !== 0) {
      classes |= kind;
      continue;
    }
    // A run ends at i.
    if (code === DOT && i - start >= 2 && decodesToJsonObject(value.slice(start, i))) return true;
    if (i - start >= MIN_OPAQUE_CREDENTIAL && (classes & 7) === 7) return true;
    start = i + 1;
    classes = 0;
  }
  return false;
}

const DOT = 0x2e;

/**
 * 1 upper case, 2 lower case, 4 digit, 8 the rest of base64 and base64url (`-_+/=`); 0 for a
 * character that ends a run. A JWS segment is base64url; Node's decoder also takes base64's `+/`
 * and `=` padding, and so may another verifier.
 */
function characterClass(code: number): number {
  if (code >= 0x41 && code <= 0x5a) return 1;
  if (code >= 0x61 && code <= 0x7a) return 2;
  if (code >= 0x30 && code <= 0x39) return 4;
  return code === 0x2d || code === 0x5f || code === 0x2b || code === 0x2f || code === 0x3d ? 8 : 0;
}

/**
 * A segment decoding to a JSON object: the header of a compact JWS or JWE (RFC 7515 §7.1), or a
 * JWS payload, whatever its first characters. `{"alg"` encodes as `eyJ`, but `{ "alg"`, a leading
 * newline or a BOM do not.
 */
function decodesToJsonObject(segment: string): boolean {
  const text = Buffer.from(segment, 'base64url').toString('utf8').replace(/^\uFEFF/, '').trim();
  if (!text.startsWith('{')) return false;
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  } catch {
    return false;
  }
}
