import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { asAgentError, createEgressClient, isEgressError } from '../../agents/shared/egress-client.js';
import { callTool, startTestGateway, waitingOnLock } from '../mcp/helpers.js';

const AGENT = { 'x-ca-a2a-client-id': 'archivist', 'x-ca-a2a-subject': 'svc-archivist' };

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readBody(req: NodeJS.ReadableStream): Promise<string> {
  let body = '';
  for await (const chunk of req) body += (chunk as Buffer).toString();
  return body;
}

describe('egress client: the gateway\'s 429 caller_busy, passed back through the sidecars (real gateway, PostgreSQL)', () => {
  const applicationName = `egress-busy-${randomUUID().slice(0, 8)}`;
  const cleanups: (() => Promise<void> | void)[] = [];
  let gatewayUrl: string;
  let holder: pg.Client;
  let observer: pg.Client;
  let relayUrl: string;
  const statuses: number[] = [];
  /** Runs on the first 429, before it is passed back: the caller's running call is let go. */
  let onBusy: () => Promise<void> = async () => undefined;

  before(async () => {
    // One database call at a time per caller, and a short wait before caller_busy.
    const started = await startTestGateway({ pool: { min: 0, max: 4, connectionTimeoutMs: 5_000, applicationName }, perCaller: { maxStatements: 1, maxWaitMs: 20 } });
    cleanups.push(() => started.close());
    gatewayUrl = started.gateway.url;
    holder = new pg.Client({ connectionString: started.databaseUrl });
    observer = new pg.Client({ connectionString: started.databaseUrl });
    await holder.connect();
    await observer.connect();
    cleanups.unshift(() => holder.end(), () => observer.end());
    // Plays the agent's and the gateway's sidecars: the agent's identity added, the gateway's
    // answer passed back as it is (status, Retry-After, body), as the egress and inbound sidecars do.
    const relay = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const answer = await fetch(`${gatewayUrl}/call_tool`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...AGENT } });
        const text = await answer.text();
        statuses.push(answer.status);
        if (answer.status === 429) await onBusy();
        const retryAfter = answer.headers.get('retry-after');
        res.writeHead(answer.status, { 'content-type': 'application/json', ...(retryAfter === null ? {} : { 'retry-after': retryAfter }) }).end(text);
      })();
    });
    relayUrl = await listen(relay);
    cleanups.push(() => void relay.close());
  });
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  const create = async (name: string): Promise<string> => {
    const doc = { filename: `${name}.txt`, content_type: 'text/plain', s3_key: `uploads/${name}-${randomUUID()}.txt`, size_bytes: 1, sha256: 'c'.repeat(64) };
    const r = await callTool(gatewayUrl, 'documents_create', doc);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return String(r.body.document_id);
  };

  /** A call of this caller's that holds its one database slot (waiting on a row lock) until the returned function ends it. */
  async function holdCallersSlot(): Promise<() => Promise<void>> {
    const locked = await create('locked');
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [locked]);
    const held = callTool(gatewayUrl, 'documents_update', { document_id: locked, error: 'held' }, AGENT);
    await waitingOnLock(observer, applicationName);
    return async () => {
      await holder.query('COMMIT');
      assert.equal((await held).status, 200);
    };
  }

  it('asks again after caller_busy, a call that changes something included (nothing ran), and succeeds once the caller\'s own call ended', async () => {
    const free = await create('free');
    onBusy = await holdCallersSlot();
    statuses.length = 0;
    const egress = createEgressClient({ baseUrl: relayUrl, rateLimitRetry: { attempts: 3, maxRetryAfterSeconds: 10, callerBusyWaitSeconds: 0 } });
    const updated = await egress.callTool<{ error: string }>('documents_update', { document_id: free, error: 'written once' });
    assert.equal(updated.error, 'written once');
    assert.deepEqual(statuses, [429, 200]);
  });

  it('gives up after its attempts while the caller stays busy, with a rate_limited caller_busy error', async () => {
    const free = await create('busy');
    const release = await holdCallersSlot();
    onBusy = async () => undefined;
    statuses.length = 0;
    try {
      const egress = createEgressClient({ baseUrl: relayUrl, rateLimitRetry: { attempts: 3, maxRetryAfterSeconds: 10, callerBusyWaitSeconds: 0 } });
      await assert.rejects(egress.callTool('documents_get', { document_id: free }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'rate_limited');
        assert.equal(error.status, 429);
        assert.equal(error.code, 'caller_busy');
        assert.equal(error.data?.['backend'], 'postgres');
        assert.match(error.message, /still after 3 attempt\(s\)/);
        const agentError = asAgentError(error) as { code: string; data: Record<string, unknown> };
        assert.equal(agentError.code, 'dependency_failed');
        assert.equal(agentError.data['dependency_reason'], 'caller_busy');
        return true;
      });
      // 3 attempts in all: a read-only call's hop retries do not add more.
      assert.deepEqual(statuses, [429, 429, 429]);
    } finally {
      await release();
    }
  });
});

describe('egress client: a sidecar\'s 503 transport.overloaded (its request-body budget full)', () => {
  let url: string;
  let server: Server;
  const seen: string[] = [];
  let refusals = 0;
  before(async () => {
    // Answers as the sidecar's transport layer refuses (docs/errors.md): nothing was forwarded.
    server = createServer((req, res) => {
      void (async () => {
        const request = JSON.parse(await readBody(req)) as { id?: string; tool?: string };
        seen.push(`${req.url} ${request.tool ?? 'message'}`);
        if (refusals-- > 0) {
          const refusal = { jsonrpc: '2.0', id: null, error: { code: -32019, message: 'too many request bytes in flight, retry later', data: { reason: 'transport.overloaded' } } };
          return res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', connection: 'close' }).end(JSON.stringify(refusal));
        }
        const answer = request.tool === undefined ? { jsonrpc: '2.0', id: request.id, result: { ok: true } } : { success: true, ok: true };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      })();
    });
    url = await listen(server);
  });
  after(() => server.close());

  it('waits its Retry-After and asks again, a tool call that changes something and an agent call included', async () => {
    const egress = createEgressClient({ baseUrl: url });
    refusals = 1;
    seen.length = 0;
    assert.deepEqual(await egress.callTool('documents_update', { document_id: 'd', status: 'failed' }), { ok: true });
    assert.deepEqual(seen, ['/mcp/call_tool documents_update', '/mcp/call_tool documents_update']);
    refusals = 1;
    seen.length = 0;
    assert.deepEqual(await egress.call('extractor', 'extract_document', { document_id: 'd' }), { ok: true });
    assert.deepEqual(seen, ['/extractor/message message', '/extractor/message message']);
  });

  it('gives up after its attempts, with a rate_limited transport.overloaded error carrying Retry-After', async () => {
    const egress = createEgressClient({ baseUrl: url, rateLimitRetry: { attempts: 2, maxRetryAfterSeconds: 10 } });
    refusals = 100;
    seen.length = 0;
    try {
      await assert.rejects(egress.callTool('documents_get', { document_id: 'd' }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'rate_limited');
        assert.equal(error.status, 503);
        assert.equal(error.code, 'transport.overloaded');
        assert.equal(error.data?.['retry_after_seconds'], 1);
        assert.match(error.message, /still after 2 attempt\(s\)/);
        return true;
      });
      assert.equal(seen.length, 2);
    } finally {
      refusals = 0;
    }
  });
});
