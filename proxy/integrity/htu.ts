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

// A Host header is host [":" port] (RFC 9110 §7.2) and nothing more: one carrying a path, query,
// fragment or userinfo ('h/other?') would move the expected htu off the path requested.
const AUTHORITY = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * What the proof's htu must be for this request: each configured public URL joined with the
 * path, or, without any (local use), http:// + Host + path, with a Host that is only an
 * authority (none otherwise). Never X-Forwarded-Host/-Proto: a client sets those.
 */
export function expectedHtus(publicUrls: readonly string[], host: string | undefined, path: string): string[] {
  if (publicUrls.length === 0) return host !== undefined && AUTHORITY.test(host) ? [normaliseHtu(`http://${host}${path}`) ?? ''] : [];
  return publicUrls.map((base) => normaliseHtu(`${base.replace(/\/$/, '')}${path}`) ?? '');
}
