import assert from 'node:assert/strict';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createContext, type Principal, type RequestContext, type RpcCall } from '../../proxy/context.js';
import { denial } from '../../proxy/denials.js';
import { AuditLog } from '../../proxy/observe/audit.js';
import { parseStrictJson } from '../../proxy/jsonrpc/strict-json.js';
import { createLogger, type Logger } from '../../proxy/observe/logger.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { minimalPolicy, writePolicy } from '../helpers/harness.js';

/** A pino destination that keeps the raw text of every line. */
class RawLines extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
    callback();
  }
}

const policy = loadPolicy(writePolicy(minimalPolicy('audit-lines')));

function context(options: { path: string; calls: Partial<RpcCall>[]; principal?: Principal }): RequestContext {
  const req = new IncomingMessage(new Socket());
  req.method = 'POST';
  const ctx = createContext(req, policy, '0d9c4a4e-2f5b-4a8e-9a51-7d0c0c7b9f3e', '203.0.113.7', 0);
  ctx.path = options.path;
  ctx.calls = options.calls.map((call, index) => ({ index, id: index, method: 'get_document', params: {}, tool: undefined, toolArguments: undefined, ...call }));
  ctx.principal = options.principal;
  return ctx;
}

const principal = (subject: string): Principal => ({
  subject, clientId: 'viewer', roles: ['viewer', 'r"ole'], jti: 'f3a1e0c2-1b6d-4d0e-8d0a-2a9a3c1b7e55',
  issuedAt: 0, expiresAt: 0, boundKeyThumbprint: undefined,
});

/** What pino itself writes for the same event, through the same logger. */
function pinoGranted(logger: Logger, ctx: RequestContext): void {
  const who = ctx.principal as Principal;
  logger.child({ subject: who.subject, client_id: who.clientId, roles: who.roles, jti: who.jti }).info({
    event_type: 'authorization', granted: true, request_id: ctx.requestId, trace_id: ctx.trace.traceId, source_ip: ctx.sourceIp, policy_version: ctx.policy.version,
    http_method: ctx.req.method, path: ctx.path || undefined, method: ctx.calls.map((call) => call.method).join(',') || undefined,
    tool: ctx.calls.find((call) => call.tool !== undefined)?.tool,
  }, 'request authorized');
}

const withoutTime = (line: string | undefined): string => (line ?? '').replace(/,"time":"[^"]*"/, '');

describe('audit decision lines', () => {
  it('writes an allowed request as the very bytes pino writes for the same fields, hostile strings included', () => {
    const out = new RawLines();
    const logger = createLogger({ service: 'audit-lines', destination: out });
    const audit = new AuditLog(logger);
    const cases = [
      context({ path: '/message', calls: [{}], principal: principal('alice') }),
      context({ path: '/a"b\\c\u0001d/ü/😀', calls: [{ method: 'tools/call', tool: 't\nool "x"' }, { method: 'get_document' }], principal: principal('o"brien\\\u001f') }),
      context({ path: '', calls: [], principal: principal('bob') }),
    ];
    for (const ctx of cases) {
      audit.granted(ctx);
      pinoGranted(logger, ctx);
    }
    assert.equal(out.lines.length, 6);
    for (let i = 0; i < out.lines.length; i += 2) {
      assert.equal(withoutTime(out.lines[i]), withoutTime(out.lines[i + 1]), `case ${i / 2}`);
      assert.match(out.lines[i] ?? '', /^\{"level":"info","time":"\d{4}-\d\d-\d\dT[\d:.]+Z","service":"audit-lines","subject":/);
    }
    const batch = JSON.parse(out.lines[2] ?? '') as Record<string, unknown>;
    assert.equal(batch.method, 'tools/call,get_document');
    assert.equal(batch.tool, 't\nool "x"');
    assert.equal(batch.path, '/a"b\\c\u0001d/ü/😀');
  });

  it('writes a refusal as pino does, with and without a caller, and keeps a lone surrogate as an escape', () => {
    const out = new RawLines();
    const logger = createLogger({ service: 'audit-lines', destination: out });
    const audit = new AuditLog(logger);
    const refused = context({ path: '/message', calls: [{}], principal: principal('alice') });
    audit.denied(refused, denial('authz.method_denied', 'role "viewer"\nmay not'), false);
    logger.child({ subject: 'alice', client_id: 'viewer', roles: ['viewer', 'r"ole'], jti: 'f3a1e0c2-1b6d-4d0e-8d0a-2a9a3c1b7e55' }).warn({
      event_type: 'authorization', granted: false, enforced: false, code: 'authz.method_denied', status: 403, reason: 'role "viewer"\nmay not',
      request_id: refused.requestId, trace_id: refused.trace.traceId, source_ip: '203.0.113.7', policy_version: policy.version, http_method: 'POST', path: '/message', method: 'get_document',
    }, 'request refused');
    audit.denied(undefined, denial('transport.bad_framing'));
    logger.warn({ event_type: 'transport_rejected', enforced: true, code: 'transport.bad_framing', status: 400, reason: 'malformed HTTP framing' }, 'request refused');
    assert.equal(withoutTime(out.lines[0]), withoutTime(out.lines[1]));
    assert.equal(withoutTime(out.lines[2]), withoutTime(out.lines[3]));

    audit.denied(context({ path: '/\ud800', calls: [], principal: undefined }), denial('transport.bad_path'));
    const line = out.lines[4] ?? '';
    assert.ok(line.includes('"path":"/\\ud800"'), 'the lone surrogate is written as an escape, so the line stays valid UTF-8');
    assert.equal((JSON.parse(line) as Record<string, unknown>).path, '/\ud800');
  });

  it('writes nothing below the logger level', () => {
    const out = new RawLines();
    const audit = new AuditLog(createLogger({ service: 'audit-lines', destination: out, level: 'error' }));
    audit.granted(context({ path: '/message', calls: [{}], principal: principal('alice') }));
    audit.denied(undefined, denial('transport.bad_framing'));
    assert.deepEqual(out.lines, []);
  });
});

describe('audit event lines', () => {
  it('name each field once: the service is the logger\'s, not repeated (parsers such as Elasticsearch\'s refuse a duplicate key)', () => {
    const out = new RawLines();
    const audit = new AuditLog(createLogger({ service: 'audit-lines', destination: out }));
    audit.event('policy_reloaded', { policy_version: policy.version }, 'policy reloaded');
    audit.event('token_revoked', { kind: 'jti', jti: 'j' }, 'token revoked', 'warn');
    assert.equal(out.lines.length, 2);
    for (const line of out.lines) {
      const parsed = parseStrictJson(Buffer.from(line), 64);
      assert.ok(parsed.ok, `${line}: ${parsed.ok ? '' : parsed.detail}`);
      assert.equal((parsed.value as Record<string, unknown>).service, 'audit-lines');
    }
  });
});
