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

  it('reports an answer cut off mid-body as a transport failure, which callers retry', async () => {
    const egress = createEgressClient({ baseUrl: url });
    await assert.rejects(egress.callTool('documents_get', { document_id: 'x' }), (error: unknown) => {
      assert.ok(isEgressError(error), String(error));
      assert.equal(error.kind, 'transport');
      return true;
    });
  });
});
