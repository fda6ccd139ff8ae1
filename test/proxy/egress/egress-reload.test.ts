import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
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

// undici checks headersTimeout on a coarse timer (about 1 s), so the target answers well after
// a 300 ms timeout fires and well before a 5000 ms one would.
const ANSWER_AFTER_MS = 2_000;
const POLICIES_DIR = new URL('../../../policies/', import.meta.url).pathname;

/** The shipped orchestrator policy with egress.timeout_ms set, its relative references made absolute. */
function orchestratorPolicy(timeoutMs: number): string {
  return readFileSync(shippedPolicyFile('orchestrator'), 'utf8')
    .replace(/(?<=: )\.\.\//g, POLICIES_DIR)
    .replace('  client_id: orchestrator\n', `  client_id: orchestrator\n  timeout_ms: ${timeoutMs}\n`);
}

describe('egress: a policy reload applies to outbound calls', () => {
  let issuer: DevIssuer;
  let target: Server;
  let orchestrator: Sidecar;
  let policyFile: string;
  const targetSockets: Socket[] = [];
  const arrivals = new EventEmitter();

  before(async () => {
    const dataDir = tempDirSync('egress-reload');
    issuer = await startIssuer({ port: 0, dataDir });
    const secrets = await loadClientSecrets(dataDir);
    target = createServer((req, res) => {
      arrivals.emit('request');
      req.resume();
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}'), ANSWER_AFTER_MS);
    });
    // Long enough that only the egress side closes an idle connection during the test.
    target.keepAliveTimeout = 60_000;
    target.on('connection', (socket: Socket) => targetSockets.push(socket));
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    policyFile = join(tempDirSync('policy'), 'orchestrator.yaml');
    writeFileSync(policyFile, orchestratorPolicy(300));
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      policyFile,
      clientSecret: secrets.orchestrator,
      serviceUrls: { extractor: `http://127.0.0.1:${(target.address() as AddressInfo).port}` },
    });
  });
  after(async () => {
    await orchestrator?.close();
    target?.closeAllConnections();
    target?.close();
    await issuer?.close();
  });

  const extract = async (): Promise<number> => {
    const res = await request(`${orchestrator.egressUrl}/extractor/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('extract_document', { document_id: DOC_ID })) });
    await res.body.dump();
    return res.statusCode;
  };
  const reloadWith = async (timeoutMs: number): Promise<void> => {
    writeFileSync(policyFile, orchestratorPolicy(timeoutMs));
    await orchestrator.reload();
  };

  it('times out at 300 ms with 504, then after a reload to 5000 ms waits and answers 200', async () => {
    await reloadWith(300);
    assert.equal(await extract(), 504);
    await reloadWith(5_000);
    assert.equal(await extract(), 200);
  });

  it('refuses a reload that would move egress to another client, keeping the policy in force', async () => {
    await reloadWith(5_000);
    const version = orchestrator.policy().version;
    writeFileSync(policyFile, orchestratorPolicy(5_000).replace('  client_id: orchestrator\n', '  client_id: extractor\n'));
    assert.equal(await orchestrator.reload(), version);
    assert.equal(await orchestrator.metrics.registry.getSingleMetricAsString('ca_a2a_policy_reloads_total').then((text) => /result="failure"[^\n]* 1$/m.test(text)), true);
    assert.equal(await extract(), 200, 'egress still calls as the orchestrator');
  });

  it('after a reload back to 300 ms answers 504, lets a call in flight finish, and closes the old connections', async () => {
    await reloadWith(5_000);
    const arrived = once(arrivals, 'request');
    const inFlight = extract();
    await arrived;
    // The 300 ms pool may keep a connection of its own open: it is the one in force.
    const old = [...targetSockets];
    await reloadWith(300);
    assert.equal(await extract(), 504);
    assert.equal(await inFlight, 200);
    // The 5000 ms pool is retired: its kept-alive connections to the target end.
    for (const socket of old) {
      if (!socket.closed) await once(socket, 'close', { signal: AbortSignal.timeout(5_000) });
    }
  });
});
