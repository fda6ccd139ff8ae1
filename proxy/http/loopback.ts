/**
 * localhost, 127.0.0.0/8 or ::1 (bracketed or not, as in a URL's hostname or a Host header):
 * names only this host, this task, can reach.
 */
export function isLoopbackHostname(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return bare.toLowerCase() === 'localhost' || bare === '::1' || /^127(?:\.\d{1,3}){3}$/.test(bare);
}
