import type { webcrypto } from 'node:crypto';
import { contentDigest } from '../integrity/digest.js';
import { createProof, createProofKey } from '../integrity/proof.js';
import { createTokenSource } from '../oauth/client-credentials.js';

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

/**
 * A client of the shipped services, as a real caller reaches them: a client_credentials token
 * from the issuer bound to a fresh ES256 key (RFC 9449), a DPoP proof per request whose `htd`
 * covers the body, and Content-Digest (RFC 9530).
 */
export async function createRpcClient(opts: { issuer: string; clientId: string; clientSecret: string }): Promise<RpcClient> {
  const key = await createProofKey();
  const tokens = createTokenSource({
    issuer: opts.issuer, clientId: opts.clientId, clientSecret: opts.clientSecret,
    dpopKey: { privateKey: key.privateKey, publicKey: key.publicKey } as webcrypto.CryptoKeyPair,
  });
  let id = 0;
  return {
    clientId: opts.clientId,
    async call(sidecarUrl, method, params) {
      const token = await tokens.getToken();
      const url = `${sidecarUrl.replace(/\/+$/, '')}/message`;
      const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }));
      const proof = await createProof(key, { htm: 'POST', htu: url, accessToken: token.accessToken, body });
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          authorization: `${token.tokenType} ${token.accessToken}`,
          dpop: proof,
          'content-digest': contentDigest(body),
        },
        signal: AbortSignal.timeout(120_000),
      });
      const json = (await res.json()) as Omit<RpcAnswer, 'status'>;
      return { status: res.status, ...(json.result === undefined ? {} : { result: json.result }), ...(json.error === undefined ? {} : { error: json.error }) };
    },
  };
}
