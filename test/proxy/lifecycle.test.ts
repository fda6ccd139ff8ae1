import assert from 'node:assert/strict';
import { connect, createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { shippedPolicyFile } from '../../proxy/services.js';
import { startSidecar } from '../../proxy/sidecar.js';

const listening = (server: Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));

/** A port nothing listens on now (the OS's pick, released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listening(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const refuses = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

describe('sidecar start-up', () => {
  it('leaves nothing listening when a later listener cannot bind', async () => {
    const busy = createServer();
    const busyPort = await listening(busy);
    const proxied = await freePort();
    try {
      await assert.rejects(
        startSidecar({ policyFile: shippedPolicyFile('archivist'), listen: `127.0.0.1:${proxied}`, adminListen: `127.0.0.1:${busyPort}`, upstream: 'http://127.0.0.1:1', issuer: 'http://127.0.0.1:1/realms/test' }),
        (error: { code?: string }) => error.code === 'EADDRINUSE',
      );
      assert.equal(await refuses(proxied), true, 'the proxied port is closed again, not serving without /ready and /metrics');
    } finally {
      busy.close();
    }
  });
});
