import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { asAgentError, createEgressClient, isEgressError, retryAfterSeconds } from '../../agents/shared/egress-client.js';
import { callTrace, withTrace } from '../../agents/shared/trace.js';

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

  it('passes on the trace of the call being served, and no trace outside one', async () => {
    const seen: (string | undefined)[][] = [];
    const sidecar = createServer((req, res) => {
      seen.push([req.headers.traceparent as string | undefined, req.headers.tracestate as string | undefined]);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true,"result":{}}');
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}` });
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const trace = callTrace({ traceparent, tracestate: 'vendor=opaque' });
      // Work started while serving the call (a timer included) keeps its trace.
      await withTrace(trace, async () => {
        await egress.callTool('documents_get', { document_id: 'x' });
        await new Promise<void>((resolve) => setTimeout(() => void egress.callTool('documents_get', { document_id: 'y' }).then(() => resolve()), 1));
      });
      await egress.callTool('documents_get', { document_id: 'z' });
      assert.deepEqual(seen, [[traceparent, 'vendor=opaque'], [traceparent, 'vendor=opaque'], [undefined, undefined]]);
      assert.equal(callTrace({ traceparent: traceparent.toUpperCase() }), undefined);
    } finally {
      sidecar.close();
    }
  });

  it('stops reading an answer past maxAnswerBytes, announced or streamed without end: answer_too_large, not asked again', async () => {
    let requests = 0;
    let streamClosed!: () => void;
    const closed = new Promise<void>((resolve) => (streamClosed = resolve));
    const sidecar = createServer((req, res) => {
      requests++;
      if (req.url === '/mcp/call_tool') {
        // Chunked, without end: only the reader stopping ends it.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"success":true,"text":"');
        const chunk = 'a'.repeat(64 * 1024);
        const more = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', more);
        };
        res.on('close', () => streamClosed());
        more();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(2 * 1024 * 1024) }).end('{'.padEnd(2 * 1024 * 1024, ' '));
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}`, maxAnswerBytes: 1024 * 1024 });
      const streamed = await egress.callTool('documents_get', { document_id: 'x' }).then(() => undefined, (error: unknown) => error);
      assert.ok(isEgressError(streamed), String(streamed));
      assert.deepEqual([streamed.kind, streamed.code, streamed.message], ['remote', 'answer_too_large', '/mcp/call_tool: answer over 1048576 bytes, not read']);
      await closed;
      assert.equal(requests, 1, 'a read-only call is not asked again: the answer would be as large');
      const announced = await egress.call('extractor', 'extract_document', { document_id: 'x' }).then(() => undefined, (error: unknown) => error);
      assert.ok(isEgressError(announced));
      assert.equal(announced.code, 'answer_too_large');
      assert.deepEqual((asAgentError(announced) as { code: string; data: unknown }).data, { dependency_reason: 'answer_too_large', dependency_status: 200 });
    } finally {
      sidecar.closeAllConnections();
      sidecar.close();
    }
  });

  it('makes a read-only tool call again when its hop failed, and never one that changes something', async () => {
    const tools: string[] = [];
    // The next `failing` calls fail as a restarting gateway's sidecar answers: 503, or a dropped connection.
    let failing = 2;
    const sidecar = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        tools.push((JSON.parse(body) as { tool: string }).tool);
        if (failing-- > 0) {
          if (failing % 2 === 1) return res.writeHead(503, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"upstream unavailable","data":{"reason":"upstream.unavailable"}}}');
          return res.destroy();
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true,"document_id":"d"}');
      });
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}`, toolRetry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 1 } });
      assert.deepEqual(await egress.callTool('documents_get', { document_id: 'd' }), { document_id: 'd' });
      assert.deepEqual(tools, ['documents_get', 'documents_get', 'documents_get']);
      failing = 2;
      tools.length = 0;
      await assert.rejects(egress.callTool('documents_update', { document_id: 'd', status: 'failed' }), (error: unknown) => isEgressError(error) && error.kind === 'transport' && error.status === 503);
      assert.deepEqual(tools, ['documents_update']);
      // Past its attempts the hop failure is the caller's, as before.
      failing = 10;
      tools.length = 0;
      await assert.rejects(egress.callTool('s3_get_object', { key: 'k' }), (error: unknown) => isEgressError(error) && error.kind === 'transport');
      assert.equal(tools.length, 3);
    } finally {
      sidecar.close();
    }
  });

  interface RateLimitingSidecar { url: string; seen: string[]; refuse: (next: number) => void; close: () => void }

  /** A sidecar that refuses the next `refusals` requests as its rate limit does, with this Retry-After (none when undefined). */
  async function rateLimitingSidecar(refusals: number, retryAfter: string | undefined): Promise<RateLimitingSidecar> {
    const seen: string[] = [];
    let left = refusals;
    const sidecar = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        const request = JSON.parse(body) as { id?: string; tool?: string };
        seen.push(`${req.url} ${request.tool ?? request.id}`);
        if (left-- > 0) {
          const refusal = '{"jsonrpc":"2.0","id":null,"error":{"code":-32029,"message":"rate limit exceeded: 300 requests per 60 s","data":{"reason":"ratelimit.exceeded"}}}';
          return res.writeHead(429, { 'content-type': 'application/json', ...(retryAfter === undefined ? {} : { 'retry-after': retryAfter }) }).end(refusal);
        }
        const answer = request.tool === undefined ? { jsonrpc: '2.0', id: request.id, result: { ok: true } } : { success: true, ok: true };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    const refuse = (next: number): void => {
      left = next;
      seen.length = 0;
    };
    return { url: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}`, seen, refuse, close: () => sidecar.close() };
  }

  it('asks again after a rate-limit 429 with a short Retry-After, a call that changes something included, with a fresh JSON-RPC id', async () => {
    const sidecar = await rateLimitingSidecar(1, '0');
    try {
      const egress = createEgressClient({ baseUrl: sidecar.url });
      assert.deepEqual(await egress.call('extractor', 'extract_document', { document_id: 'd' }), { ok: true });
      assert.equal(sidecar.seen.length, 2);
      assert.notEqual(sidecar.seen[0], sidecar.seen[1]);
      // 429 ratelimit.exceeded: the gateway's sidecar forwarded nothing, so a write is safe to repeat.
      sidecar.refuse(2);
      assert.deepEqual(await egress.callTool('documents_update', { document_id: 'd', status: 'failed' }), { ok: true });
      assert.deepEqual(sidecar.seen, ['/mcp/call_tool documents_update', '/mcp/call_tool documents_update', '/mcp/call_tool documents_update']);
    } finally {
      sidecar.close();
    }
  });

  it('gives up after its attempts when the 429s go on, with a rate_limited error carrying Retry-After', async () => {
    const sidecar = await rateLimitingSidecar(100, '0');
    try {
      const egress = createEgressClient({ baseUrl: sidecar.url, rateLimitRetry: { attempts: 3, maxRetryAfterSeconds: 10 } });
      await assert.rejects(egress.call('extractor', 'extract_document', { document_id: 'd' }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'rate_limited');
        assert.equal(error.code, 'ratelimit.exceeded');
        assert.equal(error.data?.['retry_after_seconds'], 0);
        assert.match(error.message, /still after 3 attempt\(s\)/);
        return true;
      });
      assert.equal(sidecar.seen.length, 3);
    } finally {
      sidecar.close();
    }
  });

  it('counts the 429s of one read-only tool call across its hop retries: 3 attempts in all, not 3 for each', async () => {
    // A gateway both rate-limited and restarting: 429, 429, 503, over and over.
    const answers: number[] = [];
    const sidecar = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const status = [429, 429, 503][answers.length % 3] as number;
        answers.push(status);
        const reason = status === 429 ? 'ratelimit.exceeded' : 'upstream.unavailable';
        res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '0' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32029, message: reason, data: { reason } } }));
      });
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({
        baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}`,
        toolRetry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 1 }, rateLimitRetry: { attempts: 3, maxRetryAfterSeconds: 10 },
      });
      await assert.rejects(egress.callTool('documents_get', { document_id: 'd' }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'rate_limited');
        assert.match(error.message, /still after 3 attempt\(s\)/);
        return true;
      });
      // Before, each hop retry started its own 3 attempts: 9 requests and 6 waits of Retry-After.
      assert.deepEqual(answers, [429, 429, 503, 429]);
    } finally {
      sidecar.close();
    }
  });

  for (const [title, retryAfter, message] of [
    ['a Retry-After over 10 s', '60', /retry after 60 s, longer than the 10 s this client waits/],
    ['no Retry-After', undefined, /no usable Retry-After/],
    ['a Retry-After that is not delay-seconds', 'soon', /no usable Retry-After/],
  ] as const) {
    it(`fails at once, one request, on a rate-limit 429 with ${title}`, async () => {
      const sidecar = await rateLimitingSidecar(1, retryAfter);
      try {
        const egress = createEgressClient({ baseUrl: sidecar.url });
        let failure: unknown;
        await assert.rejects(egress.call('extractor', 'extract_document', { document_id: 'd' }), (error: unknown) => {
          assert.ok(isEgressError(error), String(error));
          assert.equal(error.kind, 'rate_limited');
          assert.equal(error.status, 429);
          assert.match(error.message, message);
          failure = error;
          return true;
        });
        assert.equal(sidecar.seen.length, 1);
        // A read-only tool's transport retries do not turn it into more requests either.
        sidecar.refuse(1);
        await assert.rejects(createEgressClient({ baseUrl: sidecar.url }).callTool('documents_get', { document_id: 'd' }));
        assert.equal(sidecar.seen.length, 1);
        const agentError = asAgentError(failure) as { code: string; data: Record<string, unknown> };
        assert.equal(agentError.code, 'dependency_failed');
        assert.equal(agentError.data['dependency_reason'], 'ratelimit.exceeded');
        assert.equal(agentError.data['dependency_retry_after_seconds'], retryAfter === '60' ? 60 : undefined);
      } finally {
        sidecar.close();
      }
    });
  }

  it('reads Retry-After as delay-seconds only', () => {
    assert.equal(retryAfterSeconds('0'), 0);
    assert.equal(retryAfterSeconds(' 7 '), 7);
    for (const bad of [null, '', '1.5', '-1', 'Wed, 21 Oct 2015 07:28:00 GMT', '1e3', '0x10']) assert.equal(retryAfterSeconds(bad), undefined, String(bad));
  });

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
