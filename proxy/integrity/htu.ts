/**
 * RFC 9449 §4.3 step 9: htu compared without query and fragment, after syntax-based
 * normalisation (RFC 3986 §6.2.2 and §6.2.3: case of scheme and host, default port, dot segments).
 */
export function normaliseHtu(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * What the proof's htu must be for this request: each configured public URL joined with the
 * path, or, without any (local use), http:// + Host + path. Never X-Forwarded-Host/-Proto: a
 * client sets those.
 */
export function expectedHtus(publicUrls: readonly string[], host: string | undefined, path: string): string[] {
  if (publicUrls.length === 0) return host ? [normaliseHtu(`http://${host}${path}`) ?? ''] : [];
  return publicUrls.map((base) => normaliseHtu(`${base.replace(/\/$/, '')}${path}`) ?? '');
}
