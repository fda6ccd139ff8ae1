import { createServiceClient } from '../client/call.js';

/** A JSON-RPC answer, or the sidecar's refusal (same shape, with the HTTP status). */
export interface RpcAnswer {
  readonly status: number;
  readonly result?: Record<string, unknown>;
  readonly error?: { code: number; message: string; data?: Record<string, unknown> };
}

/** Calls services' sidecars as one OAuth client. */
export interface RpcClient {
  readonly clientId: string;
  call(sidecarUrl: string, method: string, params: Record<string, unknown>): Promise<RpcAnswer>;
}

/** process_document runs three hops; give it far longer than one call. */
const CALL_TIMEOUT_MS = 120_000;

/**
 * A caller from outside the mesh, as `ca-a2a call` is one: DPoP-bound client_credentials token,
 * a fresh proof and Content-Digest per request (proxy/client). This only adapts its answers to
 * the shape the samples runner reads.
 */
export async function createRpcClient(opts: { issuer: string; clientId: string; clientSecret: string }): Promise<RpcClient> {
  const client = await createServiceClient({ ...opts, timeoutMs: CALL_TIMEOUT_MS });
  return {
    clientId: opts.clientId,
    async call(sidecarUrl, method, params) {
      const outcome = await client.call(`${sidecarUrl.replace(/\/+$/, '')}/message`, method, params);
      if (outcome.kind === 'result') return { status: outcome.status, result: outcome.response.result as Record<string, unknown> };
      const { code, message, data } = outcome.response.error;
      return { status: outcome.status, error: { code, message, ...(typeof data === 'object' && data !== null ? { data: data as Record<string, unknown> } : {}) } };
    },
  };
}
