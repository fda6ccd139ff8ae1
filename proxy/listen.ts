import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopbackHostname } from './http/loopback.js';

/**
 * Parses HOST:PORT (IPv6 in brackets); port 0 asks the OS for a free one. Every command's
 * `--listen` goes through here, so each refuses the same addresses with the same words.
 */
export function parseListen(value: string, name = 'listen address'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`${name} '${value}' is not HOST:PORT (IPv6 in brackets, port 0 to 65535)`);
  return { host: (match[1] ?? match[2]) as string, port };
}

export function listen(server: Server, address: string): Promise<{ host: string; port: number; url: string }> {
  const { host, port } = parseListen(address);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const info = server.address() as AddressInfo;
      const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address;
      resolve({ host: info.address, port: info.port, url: `http://${shown}:${info.port}` });
    });
  });
}

/** True for 127.0.0.0/8, ::1 and localhost: addresses only this host (this task) can reach. */
export function isLoopbackListen(value: string, name?: string): boolean {
  return isLoopbackHostname(parseListen(value, name).host);
}
