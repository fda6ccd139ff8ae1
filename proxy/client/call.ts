import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { createProofKey, type ProofKey } from '../integrity/proof.js';
import { createTokenSource, type AccessToken, type TokenSource } from '../oauth/client-credentials.js';
import { refusedForToken, RenewalHolds } from '../oauth/renewal-holds.js';
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
  /** Plain http to an issuer off this machine (`--allow-http-issuer`); default: https, or http on loopback. */
  readonly allowPlainHttp?: boolean;
  /** Defaults to a fresh ES256 key for this client. */
  readonly key?: ProofKey;
  /** How long one call may take, from connecting to the last byte of the answer (its retry after a 401 included); default 30 000. */
  readonly timeoutMs?: number;
}


/**
 * Gets a DPoP-bound token by client_credentials, then signs every call with a fresh proof and a
 * Content-Digest (docs/integrity.md). A call whose token the service's sidecar refused (401,
 * authn JSON-RPC code) goes once more with a new token,
 * unless its service refused a new token too within RENEWAL_HOLD_MS (the egress's rule,
 * docs/integrity.md). Throws (with `.code`) only for transport failures: a JSON-RPC error is a value.
 */
export async function createServiceClient(options: ServiceClientOptions): Promise<ServiceClient> {
  const key = options.key ?? (await createProofKey());
  const tokens: TokenSource = createTokenSource({
    issuer: options.issuer,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    dpopKey: { privateKey: key.privateKey, publicKey: key.publicKey },
    allowPlainHttp: options.allowPlainHttp ?? false,
  });
  // By origin: the egress's rule (proxy/oauth/renewal-holds.ts).
  const renewalHolds = new RenewalHolds();
  const refusesToken = (origin: string, token: AccessToken): boolean => renewalHolds.refuses(origin, token);
  const holdRenewal = (origin: string, token: AccessToken): void => renewalHolds.hold(origin, token);
  return {
    async call(url, method, params) {
      const body = JSON.stringify({ jsonrpc: '2.0', id: randomUUID(), method, params });
      const target = new URL(url);
      // MCP Streamable HTTP (POST …/mcp) refuses a client that does not accept both; the gateway answers JSON.
      const accept = target.pathname.endsWith('/mcp') ? 'application/json, text/event-stream' : 'application/json';
      const timeoutMs = options.timeoutMs ?? 30_000;
      // One deadline for the call, from its first send: a retry after a 401 gets what is left.
      let deadline: AbortSignal | undefined;
      const send = async (token: AccessToken): Promise<{ status: number; text: string }> => {
        const headers = await signedHeaders({ key, accessToken: token.accessToken, tokenType: token.tokenType, method: 'POST', url, body });
        deadline ??= AbortSignal.timeout(timeoutMs);
        return exchange(url, { ...headers, 'content-type': 'application/json', accept }, body, deadline, timeoutMs);
      };
      const token = await tokens.getToken();
      let { status, text } = await send(token);
      // RFC 6750 §3.1: a 401 says the token is not (or no longer) good: revoked, or signed by a key
      // the issuer has replaced. When the service's sidecar refused it (refusedForToken), the call
      // was not served, so it goes once more with a new token, and the refused one is dropped;
      // unless this service refused a new token already.
      if (status === 401 && refusedForToken(text) && !refusesToken(target.origin, token)) {
        tokens.invalidate(token);
        // No new token to be had: the service's 401 is the answer, as it would have been.
        const fresh = await tokens.getToken().catch(() => token);
        if (fresh.accessToken !== token.accessToken) {
          ({ status, text } = await send(fresh));
          if (status === 401) holdRenewal(target.origin, fresh);
        }
      }
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
 * POSTs and reads the whole answer within the call's deadline: undici's headers and body timeouts
 * bound only the gaps between bytes, so a service trickling its answer would hold the caller forever.
 */
async function exchange(url: string, headers: Record<string, string>, body: string, deadline: AbortSignal, timeoutMs: number): Promise<{ status: number; text: string }> {
  try {
    const response = await request(url, { method: 'POST', headers, body, signal: deadline });
    return { status: response.statusCode, text: await response.body.text() };
  } catch (error) {
    if (deadline.aborted) throw Object.assign(new Error(`no complete answer from ${url} within ${timeoutMs} ms`), { code: 'TIMEOUT' });
    throw error;
  }
}
