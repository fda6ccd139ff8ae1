import { contentDigest } from '../integrity/digest.js';
import { createProof, type ProofKey } from '../integrity/proof.js';

/**
 * The headers of one protected request (docs/integrity.md): Authorization with the token's own
 * scheme, a fresh DPoP proof for this method, URL and body, and Content-Digest when there is a body.
 */
export async function signedHeaders(request: {
  readonly key: ProofKey;
  readonly accessToken: string;
  readonly tokenType: 'Bearer' | 'DPoP';
  readonly method: string;
  /** The URL as addressed, without query (RFC 9449 htu). */
  readonly url: string;
  readonly body?: Buffer | string;
}): Promise<Record<string, string>> {
  const headers: Record<string, string> = {
    authorization: `${request.tokenType} ${request.accessToken}`,
    dpop: await createProof(request.key, { htm: request.method, htu: request.url, accessToken: request.accessToken, body: request.body }),
  };
  if (request.body !== undefined && request.body.length > 0) headers['content-digest'] = contentDigest(request.body);
  return headers;
}
