import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import { contentDigest } from '../../../proxy/integrity/digest.js';
import { request } from 'undici';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { startSidecar, type Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture, sharedFields } from '../../helpers/audit-capture.js';
import { DOC_ID, rpc } from '../../helpers/harness.js';
import { rawJson, rawRequest, rawRequestId, sendAndReset } from '../../helpers/raw-http.js';
import { uncaughtDuring } from '../../helpers/uncaught.js';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { startEgressSidecar } from './helpers.js';

describe('egress: an agent calls another service through its sidecar, holding no credential', () => {
  let issuer: DevIssuer;
  let extractorAgent: RecordingUpstream;
  let archivistAgent: RecordingUpstream;
  let wire: RecordingUpstream;
  let extractor: Sidecar;
  let archivist: Sidecar;
  let orchestrator: Sidecar;
  const audit = new AuditCapture();

  before(async () => {
    const dataDir = tempDirSync('egress');
    issuer = await startIssuer({ port: 0, dataDir });
    const secrets = await loadClientSecrets(dataDir);
    extractorAgent = await startUpstream();
    archivistAgent = await startUpstream();
    wire = await startUpstream();
    const common = { issuer: issuer.issuer, watchPolicy: false, logDestination: audit };
    extractor = await startSidecar({ ...common, policyFile: shippedPolicyFile('extractor'), upstream: extractorAgent.url });
    archivist = await startSidecar({ ...common, policyFile: shippedPolicyFile('archivist'), upstream: archivistAgent.url });
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      logDestination: audit,
      clientSecret: secrets.orchestrator,
      serviceUrls: { extractor: extractor.url, archivist: archivist.url, validator: wire.url, mcp: wire.url },
    });
  });
  after(async () => {
    await orchestrator.close();
    await extractor.close();
    await archivist.close();
    await extractorAgent.close();
    await archivistAgent.close();
    await wire.close();
    await issuer.close();
  });

  const metricOf = async (sidecar: Sidecar, name: string, labels: string): Promise<number> => {
    const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
    return Number(text.split('\n').find((line) => line.startsWith(`${name}{`) && line.includes(labels))?.split(' ').at(-1) ?? 0);
  };

  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await request(`${orchestrator.egressUrl}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.statusCode, json: (await res.body.json()) as { id?: unknown; result?: unknown; error?: { code?: number; data?: { reason?: string } } } };
  };

  it('delivers an allowed call with a DPoP-bound token and the caller identity', async () => {
    const res = await post('/extractor/message', rpc('extract_document', { document_id: DOC_ID }));
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const seen = extractorAgent.requests.at(-1);
    assert.equal(seen?.headers['x-ca-a2a-client-id'], 'orchestrator');
    assert.equal(seen?.headers['x-ca-a2a-roles'], 'orchestrator');
    assert.equal(seen?.headers.authorization, undefined);
    assert.equal(seen?.body, JSON.stringify(rpc('extract_document', { document_id: DOC_ID })));
    const line = audit.events('egress_call').at(-1);
    assert.equal(line?.target, 'extractor');
  });

  it('continues the agent\'s trace: the target gets its trace id with the egress hop as parent, and every line of the call names it', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await post('/extractor/message', rpc('extract_document', { document_id: DOC_ID }), { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, tracestate: 'vendor=opaque' });
    assert.equal(res.status, 200);
    const call = audit.events('egress_call').at(-1);
    assert.equal(call?.['trace_id'], traceId);
    const atTarget = audit.lines.filter((line) => line['service'] === 'extractor' && line['event_type'] === 'authorization').at(-1);
    assert.equal(atTarget?.['trace_id'], traceId);
    const seen = extractorAgent.requests.at(-1);
    // The extractor's sidecar passed it on again, as the parent of its own hop.
    assert.equal(seen?.headers['traceparent'], `00-${traceId}-${String(atTarget?.['request_id']).replaceAll('-', '').slice(0, 16)}-01`);
    assert.equal(seen?.headers['tracestate'], 'vendor=opaque');
    await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }), { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    const direct = audit.events('egress_call').at(-1);
    assert.equal(wire.requests.at(-1)?.headers['traceparent'], `00-${traceId}-${String(direct?.['request_id']).replaceAll('-', '').slice(0, 16)}-01`);
  });

  it('starts a trace for a call that names none, with the egress request id as its trace id', async () => {
    await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }));
    const call = audit.events('egress_call').at(-1);
    const hex = String(call?.['request_id']).replaceAll('-', '');
    assert.equal(call?.['trace_id'], hex);
    assert.equal(wire.requests.at(-1)?.headers['traceparent'], `00-${hex}-${hex.slice(0, 16)}-00`);
  });

  it('sends a DPoP-bound token, a proof from the same key and a Content-Digest of the exact body', async () => {
    const body = rpc('validate_document', { document_id: DOC_ID }, 3);
    const res = await post('/validator/message', body);
    assert.equal(res.status, 200);
    const seen = wire.requests.at(-1);
    const [scheme, token] = String(seen?.headers.authorization).split(' ');
    assert.equal(scheme, 'DPoP');
    const claims = decodeJwt(token as string) as { cnf?: { jkt?: string }; azp?: string };
    assert.equal(claims.azp, 'orchestrator');
    const proofHeader = decodeProtectedHeader(String(seen?.headers.dpop));
    assert.equal(claims.cnf?.jkt, await calculateJwkThumbprint(proofHeader.jwk as JWK, 'sha256'));
    assert.equal(seen?.headers['content-digest'], contentDigest(JSON.stringify(body)));
    const proof = decodeJwt(String(seen?.headers.dpop));
    assert.equal(proof.htu, `${wire.url}/message`);
  });

  it('passes on the agent\'s Accept and MCP headers only, never its Authorization, DPoP or x-ca-a2a-* headers', async () => {
    const res = await request(`${orchestrator.egressUrl}/validator/message`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json', accept: 'application/json', 'mcp-protocol-version': '2025-03-26',
        authorization: 'Bearer agent-token', dpop: 'agent-proof', 'x-ca-a2a-roles': 'admin', cookie: 'a=b',
      },
      body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })),
    });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const seen = wire.requests.at(-1)?.headers;
    assert.equal(seen?.accept, 'application/json');
    assert.equal(seen?.['mcp-protocol-version'], '2025-03-26');
    assert.match(String(seen?.authorization), /^DPoP ey/);
    assert.match(String(seen?.dpop), /^ey/);
    assert.equal(seen?.['x-ca-a2a-roles'], undefined);
    assert.equal(seen?.cookie, undefined);
  });

  it("passes the target's end-to-end answer headers to the agent, not its hop-by-hop ones", async () => {
    wire.respond((recorded) => ({
      body: { jsonrpc: '2.0', id: JSON.parse(recorded.body).id, result: { ok: true } },
      headers: { connection: 'keep-alive, x-hop', 'x-hop': 'named by Connection', 'proxy-authenticate': 'Basic realm="t"', upgrade: 'h2c', 'x-kept': 'end to end' },
    }));
    try {
      const res = await request(`${orchestrator.egressUrl}/validator/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })) });
      await res.body.dump();
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['x-kept'], 'end to end');
      for (const name of ['x-hop', 'proxy-authenticate', 'upgrade']) assert.equal(res.headers[name], undefined, name);
    } finally {
      wire.respond(undefined);
    }
  });

  it('sends a call the target refused with 401 once more with a new token, and drops the refused one', async () => {
    await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }));
    const used = String(wire.requests.at(-1)?.headers.authorization).split(' ')[1] as string;
    await extractor.revoker.revoke({ kind: 'jti', jti: String(decodeJwt(used).jti), reason: 'leaked', revokedBy: 'test' });
    const served = extractorAgent.requests.length;
    const renewed = await post('/extractor/message', rpc('extract_document', { document_id: DOC_ID }));
    assert.equal(renewed.status, 200, JSON.stringify(renewed.json));
    assert.equal(extractorAgent.requests.length, served + 1, 'the agent is reached once');
    assert.equal(audit.events('egress_call').at(-1)?.token_renewed, true);
    await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }));
    assert.notEqual(String(wire.requests.at(-1)?.headers.authorization).split(' ')[1], used);
  });

  it('passes a second 401 on, sending the call twice at most', async () => {
    const count = wire.requests.length;
    wire.respond(() => ({ status: 401, body: { jsonrpc: '2.0', id: 1, error: { code: -32010, message: 'unauthorized' } } }));
    try {
      const refused = await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }));
      assert.equal(refused.status, 401);
      assert.equal(wire.requests.length, count + 2);
      const [first, second] = wire.requests.slice(count).map((r) => String(r.headers.authorization).split(' ')[1]);
      assert.notEqual(first, second, 'the second goes with a new token');
    } finally {
      wire.respond(undefined);
    }
  });

  it('passes on, sent once, a 401 the target\'s agent answered itself: the call may have been served', async () => {
    // A short one, and one longer than any sidecar's refusal (read in part, the rest passed on).
    for (const own of [{ detail: 'the archive refused our API key' }, { detail: 'x'.repeat(64 * 1024) }]) {
      const count = wire.requests.length;
      wire.respond(() => ({ status: 401, body: own }));
      try {
        const refused = await post('/validator/message', rpc('validate_document', { document_id: DOC_ID }));
        assert.equal(refused.status, 401);
        assert.deepEqual(refused.json, own, 'the agent\'s answer, unchanged');
        assert.equal(wire.requests.length, count + 1, 'not sent again');
      } finally {
        wire.respond(undefined);
      }
    }
  });

  it('passes the target\'s 401 on when no new token can be had to send the call again', async () => {
    const dataDir = tempDirSync('egress-401-issuer');
    const own = await startIssuer({ port: 0, dataDir });
    const egress = await startEgressSidecar({ issuer: own.issuer, clientSecret: (await loadClientSecrets(dataDir)).orchestrator, serviceUrls: { validator: wire.url }, logDestination: new AuditCapture() });
    try {
      const call = () => request(`${egress.egressUrl}/validator/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })) });
      assert.equal((await call()).statusCode, 200, 'a token is had and cached');
      await own.close();
      wire.respond(() => ({ status: 401, body: { jsonrpc: '2.0', id: 1, error: { code: -32010, message: 'unauthorized' } } }));
      const count = wire.requests.length;
      const refused = await call();
      assert.equal(refused.statusCode, 401);
      assert.equal(((await refused.body.json()) as { error?: { code?: number } }).error?.code, -32010);
      assert.equal(wire.requests.length, count + 1, 'sent once: there was no new token to send it again with');
    } finally {
      wire.respond(undefined);
      await egress.close();
    }
  });

  it('answers 502 when no token can be had, counts it as outcome no_token and logs the cause, sending nothing', async () => {
    const gone = await startIssuer({ port: 0, dataDir: tempDirSync('egress-gone-issuer') });
    await gone.close();
    const lines = new AuditCapture();
    const stranded = await startEgressSidecar({ issuer: gone.issuer, clientSecret: 'x'.repeat(32), serviceUrls: { validator: wire.url }, logDestination: lines });
    try {
      const count = wire.requests.length;
      const res = await request(`${stranded.egressUrl}/validator/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('validate_document', { document_id: DOC_ID })) });
      const json = (await res.body.json()) as { error?: { data?: { reason?: string } } };
      assert.equal(res.statusCode, 502);
      assert.equal(json.error?.data?.reason, 'upstream.unavailable');
      assert.equal(wire.requests.length, count);
      const line = lines.events('egress_token_failure').at(-1);
      assert.equal(line?.code, 'ISSUER_UNREACHABLE');
      assert.match(String(line?.detail), new RegExp(`${gone.issuer}.*ECONNREFUSED`));
      assert.equal(await metricOf(stranded, 'ca_a2a_egress_requests_total', 'target="validator",outcome="no_token",status="502"'), 1);
    } finally {
      await stranded.close();
    }
  });

  it('refuses locally, before anything leaves the task, a call the policy does not allow, answering with its id', async () => {
    const count = archivistAgent.requests.length;
    const res = await post('/archivist/message', rpc('delete_document', { document_id: DOC_ID }, 'del-7'));
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.data?.reason, 'authz.egress_denied');
    assert.equal(res.json.id, 'del-7', 'a single call read before the refusal gets its own id back (errors.md)');
    assert.equal(audit.events('authorization').at(-1)?.method, 'delete_document');
    const unknown = await post('/billing/message', rpc('charge', {}));
    assert.equal(unknown.json.error?.data?.reason, 'authz.egress_denied');
    assert.equal(archivistAgent.requests.length, count);
    assert.ok(audit.events('authorization').some((line) => line.code === 'authz.egress_denied'));
  });

  it('refuses locally an endpoint of the target it does not list, and a tool it is not granted', async () => {
    const count = wire.requests.length;
    const otherPath = await post('/validator/admin', rpc('validate_document', { document_id: DOC_ID }));
    assert.equal(otherPath.status, 403);
    assert.equal(otherPath.json.error?.data?.reason, 'authz.egress_denied', 'validator serves /message only');
    const seedTool = await post('/mcp/call_tool', { tool: 's3_delete_object', arguments: { key: 'uploads/x' } });
    assert.equal(seedTool.json.error?.data?.reason, 'authz.egress_denied', 'the orchestrator may not delete objects');
    const mcpTool = await post('/mcp/mcp', rpc('tools/call', { name: 's3_delete_object', arguments: { key: 'uploads/x' } }));
    assert.equal(mcpTool.json.error?.data?.reason, 'authz.egress_denied');
    assert.equal(wire.requests.length, count, 'nothing left the task');
    // The same endpoints with a granted tool do go out.
    assert.equal((await post('/mcp/call_tool', { tool: 'documents_get', arguments: { document_id: DOC_ID } })).status, 200);
    assert.equal((await post('/mcp/mcp', rpc('tools/call', { name: 'documents_get', arguments: { document_id: DOC_ID } }))).status, 200);
    assert.deepEqual(wire.requests.slice(count).map((seen) => seen.url), ['/call_tool', '/mcp']);
  });

  it('refuses a call whose Host is not a loopback address (a DNS-rebinding page) with 403, sending nothing', async () => {
    const count = wire.requests.length;
    const send = (host: string) => request(`${orchestrator.egressUrl}/mcp/call_tool`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', host },
      body: JSON.stringify({ tool: 'documents_get', arguments: { document_id: DOC_ID } }),
    });
    for (const host of ['attacker.example:15001', 'attacker.example', '127.0.0.1.attacker.example', '10.0.0.5:15001']) {
      const res = await send(host);
      const json = (await res.body.json()) as { error?: { data?: { reason?: string } } };
      assert.equal(res.statusCode, 403, host);
      assert.equal(json.error?.data?.reason, 'authz.egress_denied', host);
    }
    assert.equal(wire.requests.length, count, 'nothing left the task');
    for (const host of ['127.0.0.1:15001', 'localhost:15001', '[::1]:15001', 'LOCALHOST']) {
      const res = await send(host);
      await res.body.dump();
      assert.equal(res.statusCode, 200, host);
    }
  });

  it('refuses a /call_tool tool name over 128 characters locally, without copying it into the answer', async () => {
    const count = wire.requests.length;
    const res = await post('/mcp/call_tool', { tool: 'x'.repeat(100_000), arguments: {} });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.invalid_request');
    assert.ok(JSON.stringify(res.json).length < 1000, 'the name is not echoed');
    assert.equal(wire.requests.length, count);
  });

  it('refuses an empty batch locally with 400 and -32600, sending nothing to the target', async () => {
    const count = wire.requests.length;
    const res = await post('/validator/message', []);
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, -32600);
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.invalid_request');
    assert.equal(wire.requests.length, count);
  });

  // The inbound side refuses a batch over limits.max_batch; the egress sent one of any length (a
  // whole body of calls) with a token and a proof, to be refused there, and wrote every method
  // name of it into the egress_call line.
  it('refuses a batch over limits.max_batch locally with 400 jsonrpc.batch_too_large, sending nothing to the target', async () => {
    const count = wire.requests.length;
    const lines = audit.events('egress_call').length;
    const max = orchestrator.policy().limits.maxBatch;
    const res = await post('/validator/message', Array.from({ length: max + 1 }, (_, i) => rpc('validate_document', { document_id: DOC_ID }, i)));
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, -32600);
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.batch_too_large');
    assert.equal(wire.requests.length, count);
    assert.equal(audit.events('egress_call').length, lines);
    const full = await post('/validator/message', Array.from({ length: max }, (_, i) => rpc('validate_document', { document_id: DOC_ID }, i)));
    assert.equal(full.status, 200, 'a batch of exactly the limit goes out');
  });

  it('returns the target’s JSON-RPC errors unchanged', async () => {
    extractorAgent.respond(() => ({ body: { jsonrpc: '2.0', id: 5, error: { code: -32000, message: 'unsupported file' } } }));
    const res = await post('/extractor/message', rpc('extract_document', { document_id: DOC_ID }, 5));
    assert.deepEqual(res.json, { jsonrpc: '2.0', id: 5, error: { code: -32000, message: 'unsupported file' } });
    extractorAgent.respond(undefined);
  });

  // Node's parser refused these before the egress handler ran: a bare 400 or 408, never counted
  // or logged. Now answered, counted and logged like the inbound port's.
  it('refuses what Node\'s parser refuses, and a request without Host, with a JSON-RPC body, a count and one audit line each', async () => {
    const metric = (name: string, labels: string): Promise<number> => metricOf(orchestrator, name, labels);
    const denied = await metric('ca_a2a_denials_total', 'reason="transport.bad_framing"');
    const refused = await metric('ca_a2a_egress_requests_total', 'target="none",outcome="refused",status="400"');
    const lines = audit.events('transport_rejected').length;
    for (const payload of [
      'POST /extractor/message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      'POST /extractor/message HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
    ]) {
      const { text, closed } = await rawRequest(orchestrator.egressUrl as string, payload);
      assert.match(text, /^HTTP\/1\.1 400 /);
      assert.equal(rawJson(text).error?.data?.reason, 'transport.bad_framing');
      assert.ok(closed);
    }
    assert.equal(await metric('ca_a2a_denials_total', 'reason="transport.bad_framing"'), denied + 2);
    assert.equal(await metric('ca_a2a_egress_requests_total', 'target="none",outcome="refused",status="400"'), refused + 2);
    assert.equal(audit.events('transport_rejected').length, lines + 2);
  });

  // Node closed a CONNECT without a word (no count, no line) and answered any other Expect with a
  // bare 417 of its own: neither went through the refusal every other request gets.
  it('refuses CONNECT with 405 and an Expect other than 100-continue with 417, each with a JSON-RPC body, a count and an audit line', async () => {
    const count = wire.requests.length;
    const body = JSON.stringify(rpc('validate_document', { document_id: DOC_ID }));
    for (const [payload, status, reason] of [
      ['CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n', 405, 'transport.method_not_allowed'],
      [`POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 200-ok\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 417, 'transport.expectation_failed'],
    ] as const) {
      const lines = audit.events('transport_rejected').filter((line) => line.code === reason).length;
      const refused = await metricOf(orchestrator, 'ca_a2a_egress_requests_total', `target="none",outcome="refused",status="${status}"`);
      const { text, closed } = await rawRequest(orchestrator.egressUrl as string, payload);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), payload);
      assert.equal(rawJson(text).error?.code, -32600);
      assert.equal(rawJson(text).error?.data?.reason, reason);
      assert.ok(closed, 'the connection is closed');
      assert.equal(audit.events('transport_rejected').filter((line) => line.code === reason).length, lines + 1);
      assert.equal(await metricOf(orchestrator, 'ca_a2a_egress_requests_total', `target="none",outcome="refused",status="${status}"`), refused + 1);
    }
    assert.equal(wire.requests.length, count, 'nothing left the task');
  });

  // Node hands a CONNECT's socket over without its error listener: a client resetting the
  // connection at once made writing the refusal raise an 'error' no one heard, which ended the process.
  it('survives CONNECTs whose clients reset the connection at once, refused and logged', async () => {
    const lines = audit.events('transport_rejected').length;
    const uncaught = await uncaughtDuring(async () => {
      for (let i = 0; i < 3; i++) await sendAndReset(orchestrator.egressUrl as string, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n');
      // A CONNECT whose reset overtook its bytes never reaches the listener: not waited for.
      for (let i = 0; i < 250 && audit.events('transport_rejected').length < lines + 3; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(audit.events('transport_rejected').length > lines, 'a CONNECT reached the listener');
      const { text } = await rawRequest(orchestrator.egressUrl as string, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n');
      assert.match(text, /^HTTP\/1\.1 405 /, 'still serving');
    });
    assert.deepEqual(uncaught, []);
  });

  // Node answered 100 Continue to every Expect: 100-continue on the egress port, so an agent was
  // invited to send a body its sidecar then refused unread.
  it('refuses with Expect: 100-continue, before inviting the body, a body declared over the limit or a wrong type', async () => {
    const count = wire.requests.length;
    for (const [head, status, reason] of [
      ['POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 99000000\r\n\r\n', 413, 'transport.body_too_large'],
      ['POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n', 415, 'transport.unsupported_media_type'],
    ] as const) {
      const { text, closed } = await rawRequest(orchestrator.egressUrl as string, head);
      assert.doesNotMatch(text, /100 Continue/, reason);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), reason);
      assert.equal(rawJson(text).error?.data?.reason, reason);
      assert.ok(closed, 'closed, the body never read');
    }
    assert.equal(wire.requests.length, count, 'nothing left the task');
    // Refused from its head, the audit line is the one the same refusal has without Expect (it had no path).
    const lineOf = async (payload: string) => sharedFields((await audit.byRequestId(rawRequestId((await rawRequest(orchestrator.egressUrl as string, payload)).text))) ?? {});
    const wrongType = (expect: string) => `POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\n${expect}Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n`;
    const normal = await lineOf(`${wrongType('')}{}`);
    assert.equal(normal.path, '/validator/message');
    assert.deepEqual(await lineOf(wrongType('Expect: 100-continue\r\n')), normal);
    const body = JSON.stringify(rpc('validate_document', { document_id: DOC_ID }));
    const { text } = await rawRequest(orchestrator.egressUrl as string, `POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 3000);
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.equal(wire.requests.length, count + 1);
  });

  // As on the proxied and admin ports: Node's parser drops what was pipelined behind a request
  // asking to upgrade, and the agent waited for that answer until the keep-alive timeout.
  it('serves a request asking to upgrade as HTTP/1.1 and closes the connection after it, leaving no request pipelined behind it unanswered', async () => {
    const count = wire.requests.length;
    const body = JSON.stringify(rpc('validate_document', { document_id: DOC_ID }));
    const call = `POST /validator/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n`;
    const { text, closed } = await rawRequest(orchestrator.egressUrl as string, `${call}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n${body}${call}\r\n${body}`, 10_000);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\nconnection: close\r\n/i, 'the agent is told to send the rest on another connection');
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
    assert.ok(closed);
    assert.equal(wire.requests.length, count + 1);
  });

  it('binds the egress listener to loopback only', async () => {
    assert.match(orchestrator.egressUrl ?? '', /^http:\/\/127\.0\.0\.1:/);
    await assert.rejects(startSidecar({ policyFile: shippedPolicyFile('orchestrator'), egressListen: '0.0.0.0:0', clientSecret: 'x', watchPolicy: false, logDestination: new AuditCapture() }), /loopback/);
  });
});
