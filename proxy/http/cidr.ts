import { BlockList, isIP } from 'node:net';

/** An IP or CIDR from policy, e.g. `10.0.0.0/8`, `::1`. */
export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** Parses `ADDRESS[/PREFIX]`; undefined when it is not one. */
export function parseCidr(entry: string): Cidr | undefined {
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = slash === -1 ? max : Number(entry.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** `::ffff:1.2.3.4` (an IPv4 peer on a dual-stack socket) → `1.2.3.4`. */
export function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** Compiles a list of IPs/CIDRs into a membership test (built once per policy version). */
export function compileCidrs(entries: readonly string[]): (ip: string) => boolean {
  if (entries.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of entries) {
    const cidr = parseCidr(entry);
    if (cidr) list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return (ip) => {
    const address = normaliseIp(ip);
    const version = isIP(address);
    return version !== 0 && list.check(address, version === 4 ? 'ipv4' : 'ipv6');
  };
}

/**
 * The address a request came from. The peer, unless the peer is a trusted proxy: then walk
 * X-Forwarded-For from the right (each hop appends the address it received from) past entries
 * our own trusted proxies added, and take the first one they did not — the left part of the
 * header is whatever the client wrote and is never believed.
 */
export function sourceAddress(peer: string, forwardedFor: string | string[] | undefined, isTrusted: (ip: string) => boolean): string {
  let current = normaliseIp(peer);
  if (!isTrusted(current) || forwardedFor === undefined) return current;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map((hop) => hop.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseIp(hops[i] as string);
    if (isIP(hop) === 0) return current;
    current = hop;
    if (!isTrusted(hop)) return hop;
  }
  return current;
}
