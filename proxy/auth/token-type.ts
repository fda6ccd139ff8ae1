import type { TokenTypes } from '../policy/model.js';

/**
 * A `typ` header value as the media type it names (RFC 7515 §4.1.9): `application/` prepended when
 * it holds no slash, and in lower case (media types compare case-insensitively, RFC 2045 §5.1).
 * `at+jwt` and `application/AT+JWT` are one type.
 */
export function mediaType(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.includes('/') ? lower : `application/${lower}`;
}

/**
 * Why a verified token is not an access token, or undefined when it is. The issuer signs ID,
 * refresh and logout tokens with the same key, and an ID token can name the same audience: only
 * its type tells it from an access token. RFC 9068 §4 has resource servers check the header's
 * `typ` (`at+jwt`); Keycloak marks its tokens with a `typ` claim instead (`Bearer`, or `DPoP` when
 * bound to a key; `ID`, `Refresh`, `Logout` for the others) under a header `typ` of `JWT`.
 *
 * In order: a header `typ` that types the token explicitly (`…+jwt`, RFC 8725 §3.11: `logout+jwt`,
 * `secevent+jwt`) as something not listed refuses it; so does a typ claim not listed; then one
 * listed mark, header or claim, admits it, and a token with neither is refused.
 */
export function notAnAccessToken(header: Readonly<Record<string, unknown>>, payload: Readonly<Record<string, unknown>>, types: TokenTypes): string | undefined {
  const headerType = typeof header.typ === 'string' ? mediaType(header.typ) : undefined;
  const headerListed = headerType !== undefined && types.header.includes(headerType);
  if (header.typ !== undefined && (headerType === undefined || (!headerListed && headerType.endsWith('+jwt')))) {
    return "'typ' header: the token is typed as something other than an access token";
  }
  if (payload.typ !== undefined && (typeof payload.typ !== 'string' || !types.claim.includes(payload.typ))) {
    return "'typ' claim: not an access token (an ID, refresh or logout token is not accepted)";
  }
  if (headerListed || payload.typ !== undefined) return undefined;
  return "'typ': not marked as an access token (header typ at+jwt, or a typ claim such as Keycloak's Bearer, expected)";
}
