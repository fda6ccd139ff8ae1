import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopbackHostname } from './http/loopback.js';

/** Parses HOST:PORT (IPv6 in brackets); port 0 asks the OS for a free one. */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!match) throw new Error(`invalid listen address '${value}': expected HOST:PORT`);
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`invalid port in '${value}'`);
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
export function isLoopbackListen(value: string): boolean {
  return isLoopbackHostname(parseListen(value).host);
}
