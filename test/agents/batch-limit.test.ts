import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAgent, type RunningAgent } from '../../agents/registry.js';
import { DEFAULT_MAX_BATCH } from '../../agents/shared/jsonrpc-server.js';

const SERVICE_SCHEMA = new URL('../../proxy/policy/schemas/service.schema.json', import.meta.url);

/** The sidecar's default `limits.max_batch`, as its policy schema gives it. */
function sidecarDefaultMaxBatch(): number {
  const schema = JSON.parse(readFileSync(SERVICE_SCHEMA, 'utf8')) as { properties: { limits: { properties: { max_batch: { default: number } } } } };
  return schema.properties.limits.properties.max_batch.default;
}

const calls = (count: number) => Array.from({ length: count }, (_, id) => ({ jsonrpc: '2.0', id, method: 'no_such_method' }));

/** ca_a2a_agent_calls_total of the unknown method (each call of a batch counts once). */
async function unknownCalls(agent: RunningAgent): Promise<number> {
  const text = await (await fetch(`${agent.url}/metrics`)).text();
  return Number(/^ca_a2a_agent_calls_total\{method="unknown",outcome="method_not_found",agent="validator"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

describe('a JSON-RPC batch at an agent', () => {
  let agent: RunningAgent;
  before(async () => {
    // No call in these batches reaches a method, so the egress is never used.
    agent = await startAgent('validator', { port: 0, egressUrl: 'http://127.0.0.1:9', logger: pino({ level: 'warn' }, new Writable({ write: (_c, _e, done) => done() })) });
  });
  after(async () => {
    await agent.close();
  });

  const post = async (body: unknown) => {
    const res = await fetch(`${agent.url}/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as unknown };
  };

  it('bounds a batch at the sidecar\'s default max_batch', () => {
    assert.equal(DEFAULT_MAX_BATCH, sidecarDefaultMaxBatch());
  });

  it('runs a batch of exactly the limit, each call answered', async () => {
    const before = await unknownCalls(agent);
    const answer = await post(calls(DEFAULT_MAX_BATCH));
    assert.equal(answer.status, 200);
    assert.equal((answer.body as unknown[]).length, DEFAULT_MAX_BATCH);
    assert.equal(await unknownCalls(agent), before + DEFAULT_MAX_BATCH);
  });

  it('refuses a batch over the limit whole with 400 and -32600 naming the limit, before any call runs', async () => {
    const before = await unknownCalls(agent);
    const answer = await post(calls(5000));
    assert.equal(answer.status, 400);
    assert.deepEqual(answer.body, {
      jsonrpc: '2.0', id: null,
      error: { code: -32600, message: `batch of 5000 calls: at most ${DEFAULT_MAX_BATCH} calls per batch`, data: { reason: 'invalid_request', max_batch: DEFAULT_MAX_BATCH } },
    });
    assert.equal(await unknownCalls(agent), before, 'no call of the batch ran');
  });
});
