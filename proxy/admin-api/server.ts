import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { RevocationRecord } from '../stores/revocation-store.js';
import type { Revoker, RevokeResult } from '../stores/revoker.js';
import type { RevocationStore } from '../stores/revocation-store.js';
import { isLoopbackHostname } from '../http/loopback.js';
import { readRevokeRequest, requester } from './requests.js';

export interface AdminApiDeps {
  readonly revoker: Revoker;
  readonly store: RevocationStore;
  readonly now?: () => number;
  /** Store failures (logged by the owner; the client gets a generic 503). */
  readonly onError?: (error: unknown, route: string) => void;
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
    void route(req, res).catch((error: unknown) => {
      deps.onError?.(error, req.url ?? '');
      if (!res.headersSent) send(res, 500, { error: { code: 'internal_error', message: 'internal error' } });
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // Its sidecar addresses it by a loopback address. A web page in a browser on this host can
    // reach loopback too; by DNS rebinding (its own name resolving to 127.0.0.1) it may also read
    // the answers, and its requests then name that host in Host.
    if (!isLoopbackHost(req.headers.host)) return send(res, 403, { error: { code: 'forbidden', message: 'the Host header must name a loopback address: the admin API is reached through its sidecar' } });
    if (req.method === 'GET' && path === '/health') return send(res, 200, { status: 'ok' });
    if (req.method === 'GET' && (path === '/.well-known/agent-card.json' || path === '/card')) return send(res, 200, CARD);
    if (req.method === 'GET' && path === '/admin/revocations') {
      const listed = await listRevocations(path);
      return listed === undefined ? send(res, 503, { error: STORE_UNAVAILABLE_TO_LIST }) : send(res, 200, listed);
    }
    const kind = Object.hasOwn(REST_ROUTES, path) ? REST_ROUTES[path as keyof typeof REST_ROUTES] : undefined;
    if (req.method === 'POST' && kind) {
      const body = await readJson(req, res);
      if (body === undefined) return;
      return answer(path, () => deps.revoker.revoke(readRevokeRequest(kind, body, requester(req.headers))), (result) => send(res, 200, resultJson(result)), (status, error) => send(res, status, { error }));
    }
    if (req.method === 'POST' && path === '/message') return rpc(req, res);
    send(res, 404, { error: { code: 'not_found', message: 'no such route' } });
  }

  async function rpc(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req, res);
    if (body === undefined) return;
    // One call per request: each revocation gets its own durable answer. The admin sidecar's
    // policy (limits.max_batch: 1) refuses longer batches; this covers a batch of one.
    if (Array.isArray(body)) return send(res, 200, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'batch requests are not supported: send one call per request' } });
    if (typeof body !== 'object' || body === null) return send(res, 200, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'the body must be a JSON-RPC request object' } });
    const call = body as { id?: unknown; method?: unknown; params?: unknown };
    const id = typeof call.id === 'string' || typeof call.id === 'number' ? call.id : null;
    const reply = (result: unknown): void => send(res, 200, { jsonrpc: '2.0', id, result });
    const fail = (code: number, message: string): void => send(res, 200, { jsonrpc: '2.0', id, error: { code, message } });
    if (call.method === 'list_revocations') {
      const listed = await listRevocations('/message');
      return listed === undefined ? fail(-32017, STORE_UNAVAILABLE_TO_LIST.message) : reply(listed);
    }
    const kind = typeof call.method === 'string' && Object.hasOwn(RPC_METHODS, call.method) ? RPC_METHODS[call.method as keyof typeof RPC_METHODS] : undefined;
    if (!kind) return fail(-32601, 'method not found');
    return answer('/message', () => deps.revoker.revoke(readRevokeRequest(kind, call.params, requester(req.headers))), (result) => reply(resultJson(result)), (status, error) => fail(status === 400 ? -32602 : -32017, error.message));
  }

  /**
   * The newest revocations in force, `truncated` when there are more; undefined (logged) when the
   * store cannot answer: a 503, as for a write.
   */
  async function listRevocations(route: string): Promise<{ revocations: unknown[]; truncated: boolean } | undefined> {
    try {
      // One more than shown tells whether any was left out.
      const records = await deps.store.list(now() / 1000, MAX_LISTED + 1);
      return { revocations: records.slice(0, MAX_LISTED).map(recordJson), truncated: records.length > MAX_LISTED };
    } catch (error) {
      deps.onError?.(error, route);
      return undefined;
    }
  }

  async function answer(route: string, run: () => Promise<RevokeResult>, ok: (result: RevokeResult) => void, ko: (status: number, error: { code: string; message: string }) => void): Promise<void> {
    let result;
    try {
      result = await run();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'invalid_request' || code === 'INVALID_REVOCATION') return ko(400, { code: 'invalid_request', message: (error as Error).message });
      deps.onError?.(error, route);
      // 5xx: no detail on the wire; the log has it. Nothing was stored.
      return ko(503, { code: 'store_unavailable', message: 'revocation not recorded: the revocation store is unavailable; retry' });
    }
    ok(result);
  }
}

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

async function readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  // A form or a no-cors fetch from any web page can POST text/plain to loopback without a CORS
  // preflight; only a page allowed to (none is) may send application/json.
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    send(res, 415, { error: { code: 'unsupported_media_type', message: 'the body must be Content-Type: application/json' } });
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) {
      send(res, 413, { error: { code: 'too_large', message: 'body too large' } });
      return undefined;
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    send(res, 400, { error: { code: 'invalid_request', message: 'body must be JSON' } });
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

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}
