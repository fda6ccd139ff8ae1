import { contentDigest } from '../integrity/digest.js';
import { createProof, type ProofKey } from '../integrity/proof.js';

/**
 * RFC 9449 §4.2: a proof's htu is the request's URL "without query and fragment parts": a caller
 * may address a URL with a query (`ca-a2a call --url …?tenant=a`), whose query must neither leave
 * in the proof nor make a strict verifier refuse it.
 */
function htuOf(url: string): string {
  const addressed = new URL(url);
  addressed.search = '';
  addressed.hash = '';
  return addressed.href;
}

/**
 * The headers of one protected request (docs/integrity.md): Authorization with the token's own
 * scheme, a fresh DPoP proof for this method, URL and body, and Content-Digest when there is a body.
 */
export async function signedHeaders(request: {
  readonly key: ProofKey;
  readonly accessToken: string;
  readonly tokenType: 'Bearer' | 'DPoP';
  readonly method: string;
  /** The URL as addressed; the proof's htu is this URL without its query and fragment. */
  readonly url: string;
  readonly body?: Buffer | string;
}): Promise<Record<string, string>> {
  const headers: Record<string, string> = {
    authorization: `${request.tokenType} ${request.accessToken}`,
    dpop: await createProof(request.key, { htm: request.method, htu: htuOf(request.url), accessToken: request.accessToken, body: request.body }),
  };
  if (request.body !== undefined && request.body.length > 0) headers['content-digest'] = contentDigest(request.body);
  return headers;
}
