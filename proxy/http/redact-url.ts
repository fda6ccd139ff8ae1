/**
 * A URL as it may be repeated in an error message or a log line: a user and password in it are
 * shown as `***`. Works on text that is not a URL too (a typo is what such messages are about).
 * Everything between the scheme and the last `@` is taken for credentials: a password typed as is
 * may hold `/`, `?`, `#` or `@`, where a URL parser ends the user part early (and the URL then
 * fails to parse, or parses with the password's tail as its path). An `@` in a path or query is
 * masked with it, which loses detail but never a password.
 */
export function redactUrlUser(value: string): string {
  return value.includes('@') ? value.replace(/^([^:/?#@]*:?\/*)[\s\S]*@/, '$1***@') : value;
}
