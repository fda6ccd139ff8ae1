/**
 * Normalises a request target before any decision (RFC 3986 §5.2.4 dot-segment removal plus
 * stricter rules): the sidecar decides on, and forwards, the same normalised path, so an
 * upstream can never see a different path than the one that was authorised.
 */
export interface NormalisedTarget {
  readonly path: string;
  /** '' or the raw query including '?'. */
  readonly query: string;
}

// Encoded '/', '\', '.', NUL and other controls: legitimate clients have no reason to send them,
// and they are the raw material of traversal and route-confusion tricks.
const FORBIDDEN_ENCODINGS = /%(2f|5c|2e|00|0[0-9a-f]|1[0-9a-f]|7f)/i;
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const RAW_FORBIDDEN = /[\\\u0000-\u001f\u007f#]/;
// Already normal: non-empty segments of unreserved characters, none of them '.' or '..', no
// trailing '/'. Such a path (nearly every request's) is its own normal form.
const NORMAL_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._~-]+)+$/;

export function normaliseTarget(target: string): NormalisedTarget | undefined {
  if (!target.startsWith('/')) return undefined;
  const queryAt = target.indexOf('?');
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  const query = queryAt === -1 ? '' : target.slice(queryAt);
  if (RAW_FORBIDDEN.test(target)) return undefined;
  if (NORMAL_PATH.test(rawPath)) return { path: rawPath, query };
  if (FORBIDDEN_ENCODINGS.test(rawPath)) return undefined;
  let decoded: string;
  try {
    decoded = rawPath.includes('%') ? decodeURIComponent(rawPath) : rawPath;
  } catch {
    return undefined;
  }
  const segments: string[] = [];
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (segments.length === 0) return undefined;
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  const trailing = decoded.length > 1 && decoded.endsWith('/') && segments.length > 0 ? '/' : '';
  return { path: `/${segments.join('/')}${trailing}`, query };
}
