import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { UPSTREAM_METRICS_MAX_BYTES, UPSTREAM_METRICS_MAX_SAMPLES } from '../../proxy/admin-server.js';
import { startSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { RBAC_FILE, writePolicy } from '../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';

/** The agent's /metrics, as the test sets it. */
let exposition = '';
/** While set, the agent holds every answer until it settles. */
let hold: Promise<void> | undefined;
let agentScrapes = 0;
/** The agent's answer to a scrape: 200 with the exposition, another status, or its connection reset. */
let agentAnswer: number | 'reset' = 200;

describe("admin /metrics with the upstream's own metrics (upstream_metrics_path)", () => {
  let issuer: TestIssuer;
  let agent: Server;
  let sidecar: Sidecar;
  before(async () => {
    issuer = await startTestIssuer();
    agent = createServer((_req, res) => {
      agentScrapes++;
      if (agentAnswer === 'reset') {
        res.socket?.destroy();
        return;
      }
      const status = agentAnswer;
      void (hold ?? Promise.resolve()).then(() => res.writeHead(status, { 'content-type': 'text/plain' }).end(exposition));
    });
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve));
    const port = (agent.address() as { port: number }).port;
    sidecar = await startSidecar({
      policyFile: writePolicy(`service: metered\nrbac: ${RBAC_FILE}\nupstream: http://127.0.0.1:${port}\nupstream_metrics_path: /metrics\nauth: { issuer: ${issuer.issuer}, audience: ca-a2a-agents }\nmethods:\n  list_documents: {}\n`),
      issuer: issuer.issuer,
      watchPolicy: false,
      logDestination: new AuditCapture(),
    });
  });
  after(async () => {
    await sidecar.close();
    agent.close();
    await issuer.close();
  });

  const scrape = async (): Promise<string> => (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const typeLines = (text: string, name: string): number => text.split('\n').filter((line) => line === `# TYPE ${name} counter`).length;

  // The agent shares the task's loopback: scraping the admin port many times at once, each scrape
  // holding up to 4 MiB of the agent's answer, it could take the sidecar's memory.
  it("fetches the agent's metrics once for scrapes that come while a fetch is under way", async () => {
    exposition = '# TYPE agent_jobs_total counter\nagent_jobs_total 5\n';
    agentScrapes = 0;
    // The agent answers only once every scrape is sent: on a loaded machine, scrapes made in a burst
    // could reach the sidecar after a fixed delay's answer, and fetch anew, as they should.
    let release = (): void => undefined;
    hold = new Promise((resolve) => {
      release = resolve;
    });
    try {
      const sent: Promise<void>[] = [];
      const answered = Array.from({ length: 20 }, () => new Promise<string>((resolve, reject) => {
        const req = request(`${sidecar.adminUrl}/metrics`, { agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve(text));
        });
        req.on('error', reject);
        sent.push(new Promise((resolve) => req.end(resolve)));
      }));
      await Promise.all(sent);
      // Flushed to the sidecar's sockets; a moment for it to read them before the agent answers.
      await sleep(200);
      release();
      const texts = await Promise.all(answered);
      for (const text of texts) assert.ok(text.split('\n').includes('agent_jobs_total 5'));
      assert.equal(agentScrapes, 1);
      // Once answered, the next scrape fetches anew.
      exposition = '# TYPE agent_jobs_total counter\nagent_jobs_total 6\n';
      assert.ok((await scrape()).split('\n').includes('agent_jobs_total 6'));
      assert.equal(agentScrapes, 2);
    } finally {
      hold = undefined;
      release();
    }
  });

  // A sample of the sidecar's own metrics, 0 when absent; counted after the scrape's own metrics
  // were read, a fetch shows in the next scrape.
  const sample = (text: string, name: string, labels: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const counted = async (): Promise<Record<string, number>> => {
    const text = await scrape();
    const fetches = (result: string): number => sample(text, 'ca_a2a_upstream_metrics_fetches_total', `service="metered",result="${result}"`);
    const lines = (reason: string): number => sample(text, 'ca_a2a_upstream_metrics_lines_dropped_total', `service="metered",reason="${reason}"`);
    return {
      success: fetches('success'), http_error: fetches('http_error'), unreachable: fetches('unreachable'), too_large: fetches('too_large'),
      too_many_samples: fetches('too_many_samples'), own_family: lines('own_family'), unparseable: lines('unparseable'),
    };
  };
  const delta = (before: Record<string, number>, after: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(after).map(([key, value]) => [key, value - (before[key] ?? 0)]).filter(([, d]) => d !== 0));

  it('counts how each fetch of the agent\'s metrics ended, and the lines it dropped from appended ones', async () => {
    try {
      // Each `counted()` is a scrape, and so a fetch: the one before it shows in it.
      exposition = 'agent_jobs_total 1\nca_a2a_requests_total{service="forged"} 1\nca_a2a_requests_total{service="forged2"} 1\nnot a sample\n';
      const start = await counted();
      const afterDrops = await counted();
      assert.deepEqual(delta(start, afterDrops), { success: 1, own_family: 2, unparseable: 1 });
      agentAnswer = 503;
      await scrape();
      agentAnswer = 'reset';
      const afterHttp = await counted();
      assert.deepEqual(delta(afterDrops, afterHttp), { success: 1, own_family: 2, unparseable: 1, http_error: 1 });
      agentAnswer = 200;
      exposition = `${'agent_many 1\n'.repeat(UPSTREAM_METRICS_MAX_SAMPLES + 1)}`;
      const afterReset = await counted();
      assert.deepEqual(delta(afterHttp, afterReset), { unreachable: 1 });
      exposition = 'agent_big 1\n'.repeat(Math.ceil(UPSTREAM_METRICS_MAX_BYTES / 12) + 1);
      const afterMany = await counted();
      assert.deepEqual(delta(afterReset, afterMany), { too_many_samples: 1 });
      exposition = 'agent_jobs_total 1\n';
      const afterLarge = await counted();
      assert.deepEqual(delta(afterMany, afterLarge), { too_large: 1 });
    } finally {
      agentAnswer = 200;
    }
  });

  it("appends the agent's families", async () => {
    exposition = '# HELP agent_jobs_total Jobs.\n# TYPE agent_jobs_total counter\nagent_jobs_total 3\n';
    const text = await scrape();
    assert.match(text, /^ca_a2a_requests_total|^# TYPE ca_a2a_requests_total counter$/m);
    assert.match(text, /^agent_jobs_total 3$/m);
  });

  it('drops a family the sidecar exposes itself, which would make Prometheus refuse the whole scrape', async () => {
    exposition = '# TYPE ca_a2a_requests_total counter\nca_a2a_requests_total{service="forged"} 1e9\n# TYPE agent_jobs_total counter\nagent_jobs_total 4\n'
      + '# TYPE ca_a2a_request_duration_seconds histogram\nca_a2a_request_duration_seconds_bucket{le="+Inf"} 1\nca_a2a_request_duration_seconds_count 1\n';
    const text = await scrape();
    assert.equal(typeLines(text, 'ca_a2a_requests_total'), 1, 'one family of that name: the sidecar\'s');
    assert.doesNotMatch(text, /service="forged"/);
    assert.equal(text.split('\n').filter((line) => line.startsWith('ca_a2a_request_duration_seconds_count') && !line.includes('service=')).length, 0);
    assert.match(text, /^agent_jobs_total 4$/m, 'the rest is kept');
    assert.match(text, /^# upstream metrics dropped, names the sidecar exposes: ca_a2a_requests_total .*ca_a2a_request_duration_seconds_bucket/m);
  });

  it('keeps out a sample of its own families however it is spelled: leading blanks, a tab after #', async () => {
    // Prometheus skips blanks before a sample and reads `#<tab>TYPE` as a TYPE line: these are
    // ca_a2a_requests_total samples and a second TYPE line of it all the same.
    exposition = 'agent_jobs_total 5\n ca_a2a_requests_total{service="forged",method="x",outcome="forwarded",status="200"} 1e9\n'
      + '\tca_a2a_anomalous_token_usage_total{service="forged",action="revoked"} 1\n#\tTYPE ca_a2a_requests_total counter\n';
    const text = await scrape();
    assert.doesNotMatch(text, /forged/);
    assert.equal(text.split('\n').filter((line) => /^#[ \t]+TYPE[ \t]+ca_a2a_requests_total[ \t]/.test(line)).length, 1);
    assert.match(text, /^agent_jobs_total 5$/m);
  });

  it("drops the agent's lines Prometheus cannot parse: one would fail the whole scrape, the sidecar's own metrics with it", async () => {
    exposition = 'agent_jobs_total 6\nthis is not a metric\nagent_bad{le="1"} one\nagent_crlf 1\r\n# TYPE agent_x strange\n'
      + 'agent_dup{a="1",a="2"} 1\n# TYPE 9bad counter\nagent_ok{a="b\\"c",le="+Inf",} 7 1700000000000\nagent_inf -Inf\n';
    const text = await scrape();
    for (const bad of [/^this is not/m, /agent_bad/, /\r/, /strange/, /agent_dup/, /9bad/]) assert.doesNotMatch(text, bad);
    assert.match(text, /^agent_jobs_total 6$/m);
    assert.match(text, /^agent_ok\{a="b\\"c",le="\+Inf",\} 7 1700000000000$/m);
    assert.match(text, /^agent_inf -Inf$/m);
    assert.match(text, /^# upstream metrics dropped, 6 lines Prometheus could not parse$/m);
    assert.equal(typeLines(text, 'ca_a2a_requests_total'), 1);
  });

  // Prometheus reads the value with Go's ParseFloat, which fails on 1e999 rather than give +Inf,
  // and the timestamp as an int64: either error fails the scrape, the sidecar's metrics with it.
  // A `__name__` label renames the sample: here into a family of the sidecar's.
  it("drops the agent's samples whose value or timestamp Prometheus cannot hold, and those naming a `__` label", async () => {
    exposition = 'agent_jobs_total 7\nagent_huge 1e999\nagent_long 1' + '0'.repeat(400) + '\nagent_ts 1 9223372036854775808\n'
      + 'agent_x{__name__="ca_a2a_requests_total",service="forged"} 1e9\nagent_y{__meta="x"} 1\n'
      + 'agent_tiny 1e-999\nagent_last_ts 1 9223372036854775807\nagent_pinf +Inf\nagent_nan NaN\n';
    const text = await scrape();
    for (const bad of [/agent_huge/, /agent_long/, /agent_ts/, /forged/, /agent_y/]) assert.doesNotMatch(text, bad);
    for (const kept of ['agent_jobs_total 7', 'agent_tiny 1e-999', 'agent_last_ts 1 9223372036854775807', 'agent_pinf +Inf', 'agent_nan NaN']) {
      assert.ok(text.split('\n').includes(kept), kept);
    }
    assert.match(text, /^# upstream metrics dropped, 5 lines Prometheus could not parse$/m);
  });

  it('leaves out an exposition larger than the cap, keeping its own metrics', async () => {
    exposition = `# TYPE agent_big counter\n${'agent_big 1\n'.repeat(Math.ceil(UPSTREAM_METRICS_MAX_BYTES / 12) + 1)}`;
    const text = await scrape();
    assert.match(text, /^# upstream metrics unavailable: larger than \d+ bytes$/m);
    assert.doesNotMatch(text, /^agent_big/m);
    assert.equal(typeLines(text, 'ca_a2a_requests_total'), 1);
  });

  // 4 MiB of short lines is some 200 000 series, added to Prometheus by every scrape.
  it('keeps 10 000 samples of the agent and leaves out all of 10 001, keeping its own metrics', async () => {
    assert.equal(UPSTREAM_METRICS_MAX_SAMPLES, 10_000);
    const samples = (count: number): string => Array.from({ length: count }, (_, i) => `agent_series{i="${i}"} 1\n`).join('');
    exposition = `# TYPE agent_series gauge\n${samples(10_000)}`;
    let text = await scrape();
    assert.equal(text.split('\n').filter((line) => line.startsWith('agent_series{')).length, 10_000);
    assert.doesNotMatch(text, /^# upstream metrics unavailable/m);

    exposition = `# TYPE agent_series gauge\n${samples(10_001)}`;
    text = await scrape();
    assert.match(text, /^# upstream metrics unavailable: more than 10000 samples$/m);
    assert.doesNotMatch(text, /agent_series/, 'none of it: not the first 10 000, not its TYPE line');
    assert.equal(typeLines(text, 'ca_a2a_requests_total'), 1);
    assert.match(text, /^ca_a2a_policy_info\{/m);
  });

  it('counts neither HELP, TYPE nor comment lines, blank lines, dropped lines or its own families as samples', async () => {
    // 5 000 families of two samples each, each with a HELP, a TYPE, a comment and a blank line;
    // and lines that are not appended: a family of the sidecar's, a line Prometheus cannot parse.
    const families = (count: number): string => Array.from({ length: count }, (_, i) => `# HELP agent_f${i} F.\n# TYPE agent_f${i} gauge\n# family ${i}\n\nagent_f${i}{a="1"} 1\nagent_f${i}{a="2"} 2\n`).join('');
    const notKept = 'ca_a2a_requests_total{service="forged"} 1\nnot a sample\n'.repeat(100);
    exposition = `${families(5_000)}${notKept}`;
    let text = await scrape();
    assert.equal(text.split('\n').filter((line) => line.startsWith('agent_f')).length, 10_000);
    assert.ok(text.split('\n').includes('# HELP agent_f4999 F.'));
    assert.doesNotMatch(text, /^# upstream metrics unavailable/m);

    exposition = `${families(5_000)}agent_one_more 1\n${notKept}`;
    text = await scrape();
    assert.match(text, /^# upstream metrics unavailable: more than 10000 samples$/m);
    assert.doesNotMatch(text, /agent_f|agent_one_more/);
  });
});
