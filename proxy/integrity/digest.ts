import { createHash } from 'node:crypto';
import { parseDictionary } from 'structured-headers';

/** SHA-256 of the exact bytes. */
export function sha256(bytes: Buffer | string): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** RFC 9530 §2: `Content-Digest: sha-256=:<base64>:`. */
export function contentDigest(body: Buffer | string): string {
  return `sha-256=:${sha256(body).toString('base64')}:`;
}

/**
 * The sha-256 member of a Content-Digest field (RFC 9530 §2), read as an RFC 8941 dictionary by
 * structured-headers: a field that is not a well-formed dictionary is malformed as a whole, the
 * last of repeated members wins (§3.2), and the member must be a 32-byte byte sequence
 * (parameters allowed). Other algorithms may be listed; sha-256 is the one we require. undefined
 * when absent or malformed.
 */
export function parseContentDigest(header: string): Buffer | undefined {
  let members;
  try {
    members = parseDictionary(header);
  } catch {
    return undefined;
  }
  const value = members.get('sha-256')?.[0];
  return value instanceof ArrayBuffer && value.byteLength === 32 ? Buffer.from(value) : undefined;
}
