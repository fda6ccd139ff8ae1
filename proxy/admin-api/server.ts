import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RevocationRecord } from '../stores/revocation-store.js';
import type { Revoker, RevokeRequest, RevokeResult } from '../stores/revoker.js';
import type { RevocationStore } from '../stores/revocation-store.js';
import { isLoopbackHostname } from '../http/loopback.js';
import { readRevokeRequest, requester } from './requests.js';
import { RequestLog, type Outcome } from './request-log.js';

export interface AdminApiDeps {
  readonly revoker: Revoker;
  readonly store: RevocationStore;
  readonly now?: () => number;
  /**
   * Where each refusal (`admin_request_refused`, warn) and failure (`admin_request_failed`, error:
   * the client gets a generic 5xx, the detail is here) is logged, with who asked what.
   */
  readonly logger?: Pick<Logger, 'warn' | 'error'>;
}

const MAX_BODY = 64 * 1024;
/** Revocations in one listing, the most recently made first (an anomaly auto-revoke can make thousands). */
const MAX_LISTED = 1000;
const REST_ROUTES = {
  '/admin/revoke-token': 'jti',
  '/admin/revoke-subject': 'subject',
  '/admin/revoke-before': 'before',
} as const;
const RPC_METHODS = { revoke_token: 'jti', revoke_subject: 'subject', revoke_before: 'before' } as const;

/**
 * The admin API: a plain service with no security code of its own. It runs on 127.0.0.1 behind
 * the `admin` sidecar, which authenticates, authorises (admin role only) and validates, then
 * names the caller in x-ca-a2a-subject / x-ca-a2a-client-id — recorded as `revoked_by`.
 * A revocation answer (200) means the revocation is durable.
 */
export function createAdminApi(deps: AdminApiDeps): Server {
  const now = deps.now ?? Date.now;
  return createServer((req, res) => {
    const log = new RequestLog(req, deps.logger);
    void route(req, res, log).catch((error: unknown) => {
      const outcome = { status: 500, code: 'internal_error', message: 'internal error' };
      log.failed(outcome, error);
      if (!res.headersSent) sendError(res, outcome);
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const refuse = (outcome: Outcome): void => {
      log.refused(outcome);
      sendError(res, outcome);
    };
    // Its sidecar addresses it by a loopback address. A web page in a browser on this host can
    // reach loopback too; by DNS rebinding (its own name resolving to 127.0.0.1) it may also read
    // the answers, and its requests then name that host in Host.
    if (!isLoopbackHost(req.headers.host)) return refuse({ status: 403, code: 'forbidden', message: 'the Host header must name a loopback address: the admin API is reached through its sidecar' });
    if (req.method === 'GET' && path === '/health') return send(res, 200, { status: 'ok' });
    if (req.method === 'GET' && (path === '/.well-known/agent-card.json' || path === '/card')) return send(res, 200, CARD);
    if (req.method === 'GET' && path === '/admin/revocations') {
      const listed = await listRevocations(log, REST);
      return isOutcome(listed) ? sendError(res, listed) : send(res, 200, listed);
    }
    const kind = Object.hasOwn(REST_ROUTES, path) ? REST_ROUTES[path as keyof typeof REST_ROUTES] : undefined;
    if (req.method === 'POST' && kind) {
      const body = await readJson(req, refuse);
      if (body === undefined) return;
      log.target(body);
      const answer = await revoke(log, REST, () => readRevokeRequest(kind, body, requester(req.headers), log.requestId));
      return isOutcome(answer) ? sendError(res, answer) : send(res, 200, answer);
    }
    if (req.method === 'POST' && path === '/message') return rpc(req, res, log);
    refuse({ status: 404, code: 'not_found', message: 'no such route' });
  }

  async function rpc(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<void> {
    // A body refused before it could be read (415, 413, 400) is answered in JSON-RPC's form too,
    // with the sidecar's codes for the same refusals, in its HTTP status.
    const body = await readJson(req, (outcome) => {
      const refused = { ...outcome, rpcCode: BODY_RPC_CODES[outcome.status] ?? -32600 };
      log.refused(refused);
      send(res, refused.status, { jsonrpc: '2.0', id: null, error: { code: refused.rpcCode, message: refused.message } });
    });
    if (body === undefined) return;
    const call = isObject(body) ? (body as { id?: unknown; method?: unknown; params?: unknown }) : {};
    const id = typeof call.id === 'string' || typeof call.id === 'number' ? call.id : null;
    const reply = (answer: object): void => {
      send(res, 200, isOutcome(answer) ? { jsonrpc: '2.0', id, error: { code: answer.rpcCode, message: answer.message } } : { jsonrpc: '2.0', id, result: answer });
    };
    const refuse = (code: string, rpcCode: number, message: string): void => {
      const outcome = { status: 200, code, rpcCode, message };
      log.refused(outcome);
      reply(outcome);
    };
    // One call per request: each revocation gets its own durable answer. The admin sidecar's
    // policy (limits.max_batch: 1) refuses longer batches; this covers a batch of one.
    if (Array.isArray(body)) return refuse('invalid_request', -32600, 'batch requests are not supported: send one call per request');
    if (!isObject(body)) return refuse('invalid_request', -32600, 'the body must be a JSON-RPC request object');
    log.method(call.method);
    if (call.method === 'list_revocations') return reply(await listRevocations(log, RPC));
    const kind = typeof call.method === 'string' && Object.hasOwn(RPC_METHODS, call.method) ? RPC_METHODS[call.method as keyof typeof RPC_METHODS] : undefined;
    if (!kind) return refuse('method_not_found', -32601, 'method not found');
    log.target(call.params);
    reply(await revoke(log, RPC, () => readRevokeRequest(kind, call.params, requester(req.headers), log.requestId)));
  }

  /**
   * The newest revocations in force, `truncated` when there are more; a failure (logged) when the
   * store cannot answer: a 503, as for a write.
   */
  async function listRevocations(log: RequestLog, form: Form): Promise<{ revocations: unknown[]; truncated: boolean } | Outcome> {
    try {
      // One more than shown tells whether any was left out.
      const records = await deps.store.list(now() / 1000, MAX_LISTED + 1);
      return { revocations: records.slice(0, MAX_LISTED).map(recordJson), truncated: records.length > MAX_LISTED };
    } catch (error) {
      const outcome = form.outcome(503, -32017, STORE_UNAVAILABLE_TO_LIST);
      log.failed(outcome, error, 'revocation');
      return outcome;
    }
  }

  /** The revocation's wire answer, or the refusal or failure (logged here) to answer instead. */
  async function revoke(log: RequestLog, form: Form, request: () => RevokeRequest): Promise<Record<string, unknown> | Outcome> {
    try {
      return resultJson(await deps.revoker.revoke(request()));
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'invalid_request' || code === 'INVALID_REVOCATION') {
        const outcome = form.outcome(400, -32602, { code: 'invalid_request', message: (error as Error).message });
        log.refused(outcome);
        return outcome;
      }
      // 5xx: no detail on the wire; the log has it. Nothing was stored.
      const outcome = form.outcome(503, -32017, { code: 'store_unavailable', message: 'revocation not recorded: the revocation store is unavailable; retry' });
      log.failed(outcome, error, 'revocation');
      return outcome;
    }
  }
}

/** How an outcome is answered: an HTTP status (REST), or a JSON-RPC error in a 200 (/message). */
interface Form {
  outcome(status: number, rpcCode: number, error: { readonly code: string; readonly message: string }): Outcome;
}
const REST: Form = { outcome: (status, _rpcCode, error) => ({ status, code: error.code, message: error.message }) };
const RPC: Form = { outcome: (_status, rpcCode, error) => ({ status: 200, rpcCode, code: error.code, message: error.message }) };

// An answer is a wire result (no `status` field) or the Outcome to answer instead.
function isOutcome(answer: object): answer is Outcome {
  return 'status' in answer;
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The JSON-RPC code of a body refused before it was read, by HTTP status (docs/errors.md: the sidecar's). */
const BODY_RPC_CODES: Readonly<Record<number, number>> = { 415: -32600, 413: -32012, 400: -32700 };

const STORE_UNAVAILABLE_TO_LIST = { code: 'store_unavailable', message: 'revocations not listed: the revocation store is unavailable; retry' } as const;

const CARD = {
  name: 'ca-a2a admin',
  description: 'Token revocation for every ca-a2a sidecar (admin role only).',
  skills: ['revoke_token', 'revoke_subject', 'revoke_before', 'list_revocations'],
};

// HTTP/1.0 without Host is no browser's; the port is the listener's own.
function isLoopbackHost(host: string | undefined): boolean {
  return host === undefined || isLoopbackHostname(host.replace(/:\d{1,5}$/, ''));
}

/** The JSON body, or undefined once `refuse` answered (415, 413, 400). */
async function readJson(req: IncomingMessage, refuse: (outcome: Outcome) => void): Promise<unknown> {
  // A form or a no-cors fetch from any web page can POST text/plain to loopback without a CORS
  // preflight; only a page allowed to (none is) may send application/json.
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    refuse({ status: 415, code: 'unsupported_media_type', message: 'the body must be Content-Type: application/json' });
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) {
      refuse({ status: 413, code: 'too_large', message: 'body too large' });
      return undefined;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    refuse({ status: 400, code: 'invalid_request', message: 'body must be JSON' });
    return undefined;
  }
}

function iso(seconds: number): string {
  return new Date(Math.round(seconds * 1000)).toISOString();
}

/** The wire form of a revocation. */
export function recordJson(record: RevocationRecord): Record<string, unknown> {
  const r = record.revocation;
  return {
    kind: r.kind,
    ...(r.kind === 'jti' ? { jti: r.jti } : r.kind === 'subject' ? { subject: r.subject } : {}),
    ...(r.kind === 'jti' ? {} : { not_after: iso(r.revokedAt) }),
    revoked_at: iso(record.revokedAt),
    revoked_by: record.revokedBy,
    reason: record.reason ?? null,
    expires_at: iso(r.expiresAt),
  };
}

function resultJson(result: RevokeResult): Record<string, unknown> {
  return { revoked: true, created: result.created, pushed: result.pushed, revocation: recordJson(result.record) };
}

function sendError(res: ServerResponse, outcome: Outcome): void {
  send(res, outcome.status, { error: { code: outcome.code, message: outcome.message } });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}
