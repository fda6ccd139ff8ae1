import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEgressClient, isEgressError } from '../../agents/shared/egress-client.js';

describe('agents: egress client', () => {
  let server: Server;
  let url: string;
  before(async () => {
    // Announces 1000 bytes, sends 16, then drops the connection: a dependency failing mid-answer.
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"success":true,');
      setTimeout(() => res.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it('never follows a redirect: the body is not posted anywhere past the sidecar', async () => {
    const elsewhere: string[] = [];
    const sink = createServer((req, res) => {
      elsewhere.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true}');
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    const redirecting = createServer((_req, res) => res.writeHead(307, { location: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/steal` }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}` });
      await assert.rejects(egress.callTool('documents_get', { document_id: 'x' }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'remote');
        assert.match(error.message, /redirect \(HTTP 307\), not followed/);
        return true;
      });
      assert.deepEqual(elsewhere, []);
    } finally {
      sink.close();
      redirecting.close();
    }
  });

  it('reports an answer cut off mid-body as a transport failure, which callers retry', async () => {
    const egress = createEgressClient({ baseUrl: url });
    await assert.rejects(egress.callTool('documents_get', { document_id: 'x' }), (error: unknown) => {
      assert.ok(isEgressError(error), String(error));
      assert.equal(error.kind, 'transport');
      return true;
    });
  });
});
