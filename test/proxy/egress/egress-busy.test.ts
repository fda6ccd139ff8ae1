import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import { shippedPolicyFile } from '../../../proxy/services.js';
import type { Sidecar } from '../../../proxy/sidecar.js';
import { DOC_ID, rpc } from '../../helpers/harness.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { startEgressSidecar } from './helpers.js';

const POLICIES_DIR = new URL('../../../policies/', import.meta.url).pathname;
// The egress keeps 64 connections per target.
const CONNECTIONS = 64;

// A call waiting for a connection to a target whose every connection carries a long answer
// (a stream that keeps coming, so no per-chunk timeout fires) waited for one forever: undici's
// headers timeout starts only once a connection takes the request, so timeout_ms bounded nothing.
describe('egress: a call waiting for a connection to a busy target', () => {
  let issuer: DevIssuer;
  let target: Server;
  let orchestrator: Sidecar;
  const streams: ServerResponse[] = [];
  let ticker: NodeJS.Timeout;

  before(async () => {
    const dataDir = tempDirSync('egress-busy');
    issuer = await startIssuer({ port: 0, dataDir });
    const secrets = await loadClientSecrets(dataDir);
    target = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"jsonrpc":"2.0","id":1,"result":"');
      streams.push(res);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    // Each stream gets a byte well within the per-chunk timeout, so none of them is cut off.
    ticker = setInterval(() => {
      for (const res of streams) if (!res.destroyed) res.write('x');
    }, 50);
    const policyFile = join(tempDirSync('policy'), 'orchestrator.yaml');
    writeFileSync(policyFile, readFileSync(shippedPolicyFile('orchestrator'), 'utf8')
      .replace(/(?<=: )\.\.\//g, POLICIES_DIR)
      .replace('  client_id: orchestrator\n', '  client_id: orchestrator\n  timeout_ms: 1000\n'));
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      policyFile,
      clientSecret: secrets.orchestrator,
      serviceUrls: { extractor: `http://127.0.0.1:${(target.address() as AddressInfo).port}` },
    });
  });
  after(async () => {
    clearInterval(ticker);
    await orchestrator?.close();
    target?.closeAllConnections();
    target?.close();
    await issuer?.close();
  });

  const extract = () => request(`${orchestrator.egressUrl}/extractor/message`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(rpc('extract_document', { document_id: DOC_ID })),
    // Only so that a failing run ends: the sidecar answers long before.
    signal: AbortSignal.timeout(30_000),
  });

  it('is answered 504 upstream.timeout once timeout_ms has passed without the target\'s headers', async () => {
    const busy = await Promise.all(Array.from({ length: CONNECTIONS }, extract));
    for (const res of busy) {
      assert.equal(res.statusCode, 200);
      res.body.resume();
    }
    const waiting = await extract();
    const json = (await waiting.body.json()) as { error?: { data?: { reason?: string } } };
    assert.equal(waiting.statusCode, 504);
    assert.equal(json.error?.data?.reason, 'upstream.timeout');
    for (const res of streams) res.end('"}');
  });
});
