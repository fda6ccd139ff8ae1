import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAgent, type AgentName, type RunningAgent } from '../../agents/registry.js';
import { DEFAULT_MAX_BATCH } from '../../agents/shared/jsonrpc-server.js';
import { createAgentMetrics } from '../../agents/shared/metrics.js';
import { readChildStdout } from '../helpers/child-stdout.js';
import { DOC_ID, rpc, startHarness, type Harness } from '../helpers/harness.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

/** Metric names in the first column of the table under "## Metrics" in docs/agents.md. */
async function documentedMetrics(): Promise<string[]> {
  const doc = await readFile(new URL('../../docs/agents.md', import.meta.url), 'utf8');
  const section = doc.split(/^## Metrics$/m)[1]?.split(/^## /m)[0] ?? '';
  return [...section.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1] as string);
}

/** The value of the sample of `name` whose labels are exactly `labels` (any order) in this exposition, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const wanted = labels.split(',').sort().join();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.slice(name.length + 1, l.lastIndexOf('} ')).split(',').sort().join() === wanted);
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('docs/agents.md metrics table', () => {
  it('lists every registered ca_a2a_agent_* metric and no other', async () => {
    const registered = (await createAgentMetrics('extractor').registry.getMetricsAsJSON()).map((m) => m.name);
    const documented = await documentedMetrics();
    assert.ok(registered.length > 0);
    assert.ok(registered.every((name) => name.startsWith('ca_a2a_agent_')), registered.join());
    assert.deepEqual([...documented].sort(), [...registered].sort());
  });
});

describe("an agent's metrics, on its loopback port and on its sidecar's admin /metrics", () => {
  let agent: RunningAgent;
  let harness: Harness;
  before(async () => {
    // Nothing listens at its egress: every extraction fails as dependency_failed, which is counted too.
    agent = await startAgent('extractor', {
      port: 0, egressUrl: 'http://127.0.0.1:1', logger: pino({ level: 'warn' }, new Writable({ write: (_c, _e, done) => done() })),
    });
    harness = await startHarness({ service: 'extractor', sidecar: { upstream: agent.url } });
  });
  after(async () => {
    await harness?.close();
    await agent?.close();
  });

  it('counts each call by method and outcome, a method it does not serve as unknown, and the sidecar serves them after its own', async () => {
    const token = await harness.issuer.sign({ sub: 'service-account-orchestrator', azp: 'orchestrator', realm_access: { roles: ['orchestrator'] } });
    const through = await harness.call(rpc('extract_document', { document_id: DOC_ID }), { token });
    assert.equal(through.status, 200, JSON.stringify(through.json));
    assert.ok(through.json.error, 'the extraction failed: nothing listens at the egress');
    const direct = await fetch(`${agent.url}/message`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'made_up_name' }, { jsonrpc: '2.0', id: 2, method: 'another_name' }]),
    });
    assert.equal(direct.status, 200);

    const own = await (await fetch(`${agent.url}/metrics`)).text();
    const outcome = (through.json.error?.data as { code?: string } | undefined)?.code ?? 'dependency_failed';
    assert.equal(sample(own, 'ca_a2a_agent_calls_total', `method="extract_document",outcome="${outcome}",agent="extractor"`), 1, own);
    assert.equal(sample(own, 'ca_a2a_agent_calls_total', 'method="unknown",outcome="method_not_found",agent="extractor"'), 2, own);
    assert.equal(sample(own, 'ca_a2a_agent_call_duration_seconds_count', 'method="extract_document",agent="extractor"'), 1, own);
    assert.doesNotMatch(own, /made_up_name|another_name/, 'a caller-chosen name never becomes a label');

    const scraped = await (await fetch(`${harness.sidecar.adminUrl}/metrics`)).text();
    assert.ok(scraped.indexOf('ca_a2a_requests_total') < scraped.indexOf('ca_a2a_agent_calls_total'), "the sidecar's own families first");
    assert.equal(sample(scraped, 'ca_a2a_agent_calls_total', `method="extract_document",outcome="${outcome}",agent="extractor"`), 1);
    assert.equal(sample(scraped, 'ca_a2a_agent_log_lines_dropped_total', 'agent="extractor"'), 0, 'exported at 0 from the start');

    // The proxied port serves no metrics, the agent's or its own.
    const publicScrape = await harness.call(undefined, { method: 'GET', path: '/metrics', token });
    assert.notEqual(publicScrape.status, 200);
    assert.doesNotMatch(JSON.stringify(publicScrape.json), /ca_a2a_agent_calls_total/);
  });
});

describe("the orchestrator's pipeline runs", () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack();
  });
  after(async () => {
    await stack?.close();
  });

  it('counts each run by outcome and trigger, and each step agent counts the call it answered', async () => {
    for (const [file, type] of [['meeting-notes.txt', 'text/plain'], ['invalid-expenses.csv', 'text/csv']] as const) {
      const id = await stack.uploadSample(file, type);
      const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
      assert.ok(answer.result, JSON.stringify(answer.error));
    }
    const scrape = async (name: AgentName) => (await fetch(`${stack.agents.get(name)?.url}/metrics`)).text();
    const orchestrator = await scrape('orchestrator');
    assert.equal(sample(orchestrator, 'ca_a2a_agent_pipeline_runs_total', 'outcome="archived",trigger="process_document",agent="orchestrator"'), 1, orchestrator);
    assert.equal(sample(orchestrator, 'ca_a2a_agent_pipeline_runs_total', 'outcome="failed",trigger="process_document",agent="orchestrator"'), 1, orchestrator);
    assert.equal(sample(orchestrator, 'ca_a2a_agent_calls_total', 'method="process_document",outcome="success",agent="orchestrator"'), 2);
    assert.equal(sample(await scrape('extractor'), 'ca_a2a_agent_calls_total', 'method="extract_document",outcome="success",agent="extractor"'), 2);
    assert.equal(sample(await scrape('archivist'), 'ca_a2a_agent_pipeline_runs_total', 'outcome="archived",trigger="process_document",agent="archivist"'), undefined, 'runs are the orchestrator\'s');
  });
});

describe("the orchestrator's pipeline runs whose failure cannot be recorded", () => {
  let stack: AgentStack;
  // Answers the orchestrator's extract_document with corrupt_document, after cutting the agents off
  // the gateway: the run then cannot record the failure.
  const extractorStandIn = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      stack.routeGatewayTo('http://127.0.0.1:1');
      const { id } = JSON.parse(text) as { id: string };
      res.writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32023, message: 'the file cannot be read', data: { reason: 'corrupt_document' } } }));
    });
  });
  before(async () => {
    stack = await startAgentStack();
    await new Promise<void>((resolve) => extractorStandIn.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    extractorStandIn.close();
    await stack?.close();
  });

  it('counts a run whose failure could not be recorded as failed_unrecorded, not failed, and leaves the document to the sweep', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    stack.routeTo('extractor', `http://127.0.0.1:${(extractorStandIn.address() as AddressInfo).port}`);
    try {
      await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    } finally {
      stack.routeTo('extractor', undefined);
      stack.routeGatewayTo(undefined);
    }
    const doc = (await stack.call('archivist', 'get_document', { document_id: id }, 'viewer')).result;
    assert.equal(doc?.['status'], 'processing', 'nothing recorded: the stale sweep retakes it');
    const orchestrator = await (await fetch(`${stack.agents.get('orchestrator')?.url}/metrics`)).text();
    assert.equal(sample(orchestrator, 'ca_a2a_agent_pipeline_runs_total', 'outcome="failed_unrecorded",trigger="process_document",agent="orchestrator"'), 1, orchestrator);
    assert.equal(sample(orchestrator, 'ca_a2a_agent_pipeline_runs_total', 'outcome="failed",trigger="process_document",agent="orchestrator"'), undefined, orchestrator);
  });
});

describe('an agent whose stdout is not read', () => {
  it('keeps answering, drops the lines past its bound, counts them in ca_a2a_agent_log_lines_dropped_total, and logs again once read', async () => {
    const child = spawn(process.execPath, [BIN, 'agent', 'extractor', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:1'], {
      env: { ...process.env, CA_A2A_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const stdout = readChildStdout(child);
      const started = await stdout.line<{ url: string }>('agent_started');
      assert.match(await (await fetch(`${started.url}/metrics`)).text(), /^ca_a2a_agent_log_lines_dropped_total\{agent="extractor"\} 0$/m);
      child.stdout.pause();

      // Each call is one agent_call line of about 1 KB (request and client ids at their caps):
      // 1 200 batches of the agent's most, 20, are some 24 MiB, past the 16 MiB bound and the pipe's 64 KiB.
      const headers = { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'q'.repeat(256), 'x-ca-a2a-client-id': 'c'.repeat(256), 'x-ca-a2a-subject': 's'.repeat(256) };
      const body = JSON.stringify(Array.from({ length: DEFAULT_MAX_BATCH }, (_, id) => ({ jsonrpc: '2.0', id, method: 'no_such_method' })));
      const post = async () => (await fetch(`${started.url}/message`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })).status;
      for (let sent = 0; sent < 24_000; sent += 4 * DEFAULT_MAX_BATCH) assert.deepEqual(await Promise.all([post(), post(), post(), post()]), [200, 200, 200, 200]);

      const scraped = await (await fetch(`${started.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      const dropped = Number(/^ca_a2a_agent_log_lines_dropped_total\{agent="extractor"\} (\d+)$/m.exec(scraped)?.[1]);
      assert.ok(dropped > 0, `dropped: ${dropped}`);

      // The reader comes back: what was kept comes out, then new lines again.
      child.stdout.resume();
      const send = () => fetch(`${started.url}/message`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'after-the-block' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'no_such_method' }),
      });
      assert.ok(await stdout.sendUntilRead('"request_id":"after-the-block"', send), 'a line logged once stdout is read again comes out');
    } finally {
      child.kill('SIGKILL');
      if (child.exitCode === null) await once(child, 'exit');
    }
  });
});
