/**
 * A URL as it may be repeated in an error message or a log line: a user and password in it are
 * shown as `***`. Works on text that is not a URL too (a typo is what such messages are about),
 * where anything between `//` and an `@` before the path is taken for credentials.
 */
export function redactUrlUser(value: string): string {
  if (URL.canParse(value)) {
    const url = new URL(value);
    if (url.username === '' && url.password === '') return value;
    url.username = '***';
    url.password = '';
    return url.href;
  }
  return value.replace(/^([^/?#]*\/\/)[^/?#]*@/, '$1***@');
}
