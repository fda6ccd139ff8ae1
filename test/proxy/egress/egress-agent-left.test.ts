import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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

// An agent that closed its connection while its call waited for the target's answer left the call
// running until timeout_ms, holding one of the target's connections for an answer nobody read.
describe('egress: an agent that closes its connection before the answer', () => {
  let issuer: DevIssuer;
  let target: Server;
  let orchestrator: Sidecar;
  const arrived: IncomingMessage[] = [];

  before(async () => {
    const dataDir = tempDirSync('egress-agent-left');
    issuer = await startIssuer({ port: 0, dataDir });
    const secrets = await loadClientSecrets(dataDir);
    // Reads each call and never answers it, but for one whose JSON-RPC id is 77: a 4 MiB answer,
    // more than the egress can hold for an agent that does not read it.
    target = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (body.includes('"id":77')) res.writeHead(200, { 'content-type': 'application/json' }).end(Buffer.alloc(4 * 1024 * 1024, 0x20));
      });
      arrived.push(req);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const policyFile = join(tempDirSync('policy'), 'orchestrator.yaml');
    writeFileSync(policyFile, readFileSync(shippedPolicyFile('orchestrator'), 'utf8')
      .replace(/(?<=: )\.\.\//g, POLICIES_DIR)
      .replace('  client_id: orchestrator\n', '  client_id: orchestrator\n  timeout_ms: 600000\n'));
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      policyFile,
      clientSecret: secrets.orchestrator,
      serviceUrls: { extractor: `http://127.0.0.1:${(target.address() as AddressInfo).port}` },
    });
  });
  after(async () => {
    // The target's connections first: a call still waiting on one would hold the egress's close.
    target?.closeAllConnections();
    target?.close();
    await orchestrator?.close();
    await issuer?.close();
  });

  const metric = async (labels: string): Promise<number> => {
    const text = await (await request(`${orchestrator.adminUrl}/metrics`)).body.text();
    return Number(text.split('\n').find((line) => line.startsWith('ca_a2a_egress_requests_total{') && line.includes(labels))?.split(' ').at(-1) ?? 0);
  };

  // The test's own timeout only ends a failing run: the egress waits 10 minutes for the target.
  it('ends the call to the target at once, and counts it as outcome client_closed', { timeout: 30_000 }, async () => {
    const labels = 'target="extractor",outcome="client_closed",status="499"';
    assert.equal(await metric(labels), 0);
    const body = JSON.stringify(rpc('extract_document', { document_id: DOC_ID }));
    const { hostname, port } = new URL(orchestrator.egressUrl as string);
    const agent = connect(Number(port), hostname);
    agent.write(`POST /extractor/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    while (arrived.length === 0) await sleep(10);
    const call = arrived[0] as IncomingMessage;
    const targetSide = once(call.socket, 'close');
    agent.destroy();
    await targetSide;
    while (await metric(labels) === 0) await sleep(10);
    assert.equal(await metric(labels), 1);
    assert.equal(await metric('target="extractor",outcome="forwarded"'), 0, 'not counted as an answered call');
  });

  // Node tells only the answer under way that its client has gone, not one queued behind it for a
  // pipelined request: the second call went on for no one until timeout_ms, holding a connection
  // to the target.
  it('ends a pipelined call queued behind another when the agent leaves, counted as client_closed', { timeout: 30_000 }, async () => {
    const labels = 'target="extractor",outcome="client_closed",status="499"';
    const before = await metric(labels);
    const seen = arrived.length;
    const body = JSON.stringify(rpc('extract_document', { document_id: DOC_ID }));
    const post = `POST /extractor/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const { hostname, port } = new URL(orchestrator.egressUrl as string);
    const agent = connect(Number(port), hostname);
    agent.write(post + post);
    while (arrived.length < seen + 2) await sleep(10);
    const targetSide = arrived.slice(seen).map((call) => once(call.socket, 'close'));
    agent.destroy();
    await Promise.all(targetSide);
    while (await metric(labels) < before + 2) await sleep(10);
    assert.equal(await metric(labels), before + 2);
  });

  // Its answer streaming into a response queued behind another, which Node never flushes nor closes:
  // once past the buffers it waited for a drain that never came, holding its target connection.
  it('ends the answer of a pipelined call streaming behind another when the agent leaves', { timeout: 30_000 }, async () => {
    const forwarded = 'target="extractor",outcome="forwarded"';
    const before = await metric(forwarded);
    const seen = arrived.length;
    const post = (id: number): string => {
      const body = JSON.stringify(rpc('extract_document', { document_id: DOC_ID }, id));
      return `POST /extractor/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    const { hostname, port } = new URL(orchestrator.egressUrl as string);
    const agent = connect(Number(port), hostname);
    agent.on('error', () => undefined);
    agent.write(post(1) + post(77));
    while (arrived.length < seen + 2 || await metric(forwarded) === before) await sleep(10);
    // Closed with a reset (the egress drops it mid-answer): 'close', never once()'s rejection on 'error'.
    const targetSide = arrived.slice(seen).map((call) => new Promise((resolve) => call.socket.once('close', resolve)));
    agent.destroy();
    await Promise.all(targetSide);
  });
});
