import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { createProofKey, type ProofKey } from '../integrity/proof.js';
import { createTokenSource, type TokenSource } from '../oauth/client-credentials.js';
import { signedHeaders } from './signed-headers.js';

/** What a JSON-RPC call answered: a result, or an error object (from the service or its sidecar). */
export type CallOutcome =
  | { readonly kind: 'result'; readonly status: number; readonly response: { jsonrpc: '2.0'; id: unknown; result: unknown } }
  | { readonly kind: 'error'; readonly status: number; readonly response: { jsonrpc: '2.0'; id: unknown; error: { code: number; message: string; data?: unknown } } };

/** A client for callers outside the mesh (the seed's S3-event lambda, scripts, `ca-a2a call`). */
export interface ServiceClient {
  call(url: string, method: string, params: unknown): Promise<CallOutcome>;
}

export interface ServiceClientOptions {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Defaults to a fresh ES256 key for this client. */
  readonly key?: ProofKey;
  /** How long one call may take, from connecting to the last byte of the answer; default 30 000. */
  readonly timeoutMs?: number;
}

/**
 * Gets a DPoP-bound token by client_credentials, then signs every call with a fresh proof and a
 * Content-Digest (docs/integrity.md). Throws (with `.code`) only for transport failures: a
 * JSON-RPC error is a value.
 */
export async function createServiceClient(options: ServiceClientOptions): Promise<ServiceClient> {
  const key = options.key ?? (await createProofKey());
  const tokens: TokenSource = createTokenSource({
    issuer: options.issuer,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    dpopKey: { privateKey: key.privateKey, publicKey: key.publicKey },
  });
  return {
    async call(url, method, params) {
      const token = await tokens.getToken();
      const body = JSON.stringify({ jsonrpc: '2.0', id: randomUUID(), method, params });
      const headers = await signedHeaders({ key, accessToken: token.accessToken, tokenType: token.tokenType, method: 'POST', url, body });
      // MCP Streamable HTTP (POST …/mcp) refuses a client that does not accept both; the gateway answers JSON.
      const accept = new URL(url).pathname.endsWith('/mcp') ? 'application/json, text/event-stream' : 'application/json';
      const { status, text } = await exchange(url, { ...headers, 'content-type': 'application/json', accept }, body, options.timeoutMs ?? 30_000);
      // A refused token (revoked, or signed by a replaced key) must not go out again with the next call.
      if (status === 401) tokens.invalidate(token);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw Object.assign(new Error(`HTTP ${status} with a body that is not JSON`), { code: 'BAD_RESPONSE' });
      }
      // JSON-RPC 2.0 §5: a response holds either result or error. Anything else (an agent's own
      // {"detail": …} with HTTP 500) is no answer to the call, never a result.
      const message = parsed as { jsonrpc?: unknown; result?: unknown; error?: unknown };
      const isResponse = typeof message === 'object' && message !== null && !Array.isArray(message) && message.jsonrpc === '2.0';
      if (isResponse && typeof message.error === 'object' && message.error !== null) {
        return { kind: 'error', status, response: parsed as Extract<CallOutcome, { kind: 'error' }>['response'] };
      }
      if (isResponse && Object.hasOwn(message, 'result')) {
        return { kind: 'result', status, response: parsed as Extract<CallOutcome, { kind: 'result' }>['response'] };
      }
      throw Object.assign(new Error(`HTTP ${status} with a body that is not a JSON-RPC response`), { code: 'BAD_RESPONSE' });
    },
  };
}

/**
 * POSTs and reads the whole answer within one deadline: undici's headers and body timeouts bound
 * only the gaps between bytes, so a service trickling its answer would hold the caller forever.
 */
async function exchange(url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    const response = await request(url, { method: 'POST', headers, body, signal: deadline });
    return { status: response.statusCode, text: await response.body.text() };
  } catch (error) {
    if (deadline.aborted) throw Object.assign(new Error(`no complete answer from ${url} within ${timeoutMs} ms`), { code: 'TIMEOUT' });
    throw error;
  }
}
