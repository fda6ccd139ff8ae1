import assert from 'node:assert/strict';
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import type { Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { DOC_ID, rpc } from '../../helpers/harness.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { startEgressSidecar } from './helpers.js';

// A target's answer the agent cannot be given as it came: undici unchunked a gzip, chunked body
// and left it coded, and the egress dropped Transfer-Encoding as hop-by-hop, so the agent took the
// gzip bytes for the JSON-RPC answer; a status above 599 went on as if it were one.
describe('egress: an answer a target writes by hand', () => {
  let issuer: DevIssuer;
  let target: Server;
  let orchestrator: Sidecar;
  let answer = '';
  const audit = new AuditCapture();

  before(async () => {
    const dataDir = tempDirSync('egress-answers');
    issuer = await startIssuer({ port: 0, dataDir });
    target = createNetServer((socket) => {
      socket.on('data', (data) => {
        if (data.includes('\r\n\r\n')) socket.write(Buffer.from(answer, 'latin1'));
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      clientSecret: (await loadClientSecrets(dataDir)).orchestrator,
      serviceUrls: { validator: `http://127.0.0.1:${(target.address() as AddressInfo).port}` },
      logDestination: audit,
    });
  });
  after(async () => {
    await orchestrator?.close();
    target?.close();
    await issuer?.close();
  });

  it('answers 502 upstream.unavailable to a transfer coding besides chunked and to a status above 599', async () => {
    const gzipped = gzipSync('{"jsonrpc":"2.0","id":1,"result":{}}');
    for (const [what, text] of [
      ['gzip, chunked', `HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${gzipped.length.toString(16)}\r\n${gzipped.toString('latin1')}\r\n0\r\n\r\n`],
      ['status 600', 'HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\n{}'],
    ]) {
      answer = text as string;
      const res = await request(`${orchestrator.egressUrl}/validator/message`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })),
      });
      const body = (await res.body.json()) as { error?: { data?: { reason?: string } } };
      assert.equal(res.statusCode, 502, what);
      assert.equal(body.error?.data?.reason, 'upstream.unavailable', what);
    }
    // A well-framed answer still goes on as it came.
    answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n';
    const res = await request(`${orchestrator.egressUrl}/validator/message`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), '{}');
  });
});
