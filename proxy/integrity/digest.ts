import { createHash } from 'node:crypto';

/** SHA-256 of the exact bytes. */
export function sha256(bytes: Buffer | string): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** RFC 9530 §2: `Content-Digest: sha-256=:<base64>:`. */
export function contentDigest(body: Buffer | string): string {
  return `sha-256=:${sha256(body).toString('base64')}:`;
}

/**
 * Reads the sha-256 member of a Content-Digest dictionary (RFC 9530 §2, RFC 8941 §3.2 byte
 * sequences). Other algorithms may be listed; sha-256 is the one we require. undefined when absent
 * or malformed.
 */
export function parseContentDigest(header: string): Buffer | undefined {
  for (const member of header.split(',')) {
    const match = /^\s*sha-256\s*=\s*:([A-Za-z0-9+/]+={0,2}):\s*$/.exec(member);
    if (match) {
      const bytes = Buffer.from(match[1] as string, 'base64');
      return bytes.length === 32 ? bytes : undefined;
    }
  }
  return undefined;
}
