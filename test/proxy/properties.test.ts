import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseStrictJson } from '../../proxy/jsonrpc/strict-json.js';
import { normaliseTarget } from '../../proxy/http/path.js';
import { readEnvelope } from '../../proxy/jsonrpc/envelope.js';
import { decide } from '../../proxy/policy/decide.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { writePolicy } from '../helpers/harness.js';
import { shippedPolicyFile } from '../../proxy/services.js';

describe('strict JSON reader (property-based)', () => {
  it('agrees with JSON.parse on every JSON value without duplicate or prototype keys', () => {
    const safeKey = fc.string().filter((key) => !['__proto__', 'constructor', 'prototype'].includes(key));
    const value = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null), fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(),
        fc.array(tie('v'), { maxLength: 4 }),
        fc.dictionary(safeKey, tie('v'), { maxKeys: 4 }),
      ),
    })).v;
    fc.assert(fc.property(value, (input) => {
      const text = JSON.stringify(input);
      const result = parseStrictJson(Buffer.from(text), 1000);
      assert.ok(result.ok, text);
      assert.deepEqual(result.value, JSON.parse(text));
    }), { numRuns: 500 });
  });

  it('never throws on arbitrary bytes and never accepts what JSON.parse rejects', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const buffer = Buffer.from(bytes);
      const result = parseStrictJson(buffer, 64);
      if (result.ok) assert.doesNotThrow(() => JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buffer)));
    }), { numRuns: 2000 });
  });

  it('never throws on JSON-ish hostile text (brackets, quotes, escapes, keys)', () => {
    const token = fc.constantFrom('{', '}', '[', ']', ',', ':', '"', '\\', '\\u0000', '"__proto__"', '"a"', '1', '-0.5e3', 'true', 'null', ' ', '\n');
    fc.assert(fc.property(fc.array(token, { maxLength: 60 }), (tokens) => {
      const text = tokens.join('');
      const result = parseStrictJson(Buffer.from(text), 8);
      if (result.ok) {
        assert.doesNotThrow(() => JSON.parse(text));
        assert.ok(!text.includes('"__proto__":'), 'a __proto__ key must never be accepted');
      }
    }), { numRuns: 3000 });
  });

  it('never reads a non-string method out of an envelope', () => {
    fc.assert(fc.property(fc.anything(), (value) => {
      const result = readEnvelope(value, 0);
      if (result.ok) assert.equal(typeof result.call.method, 'string');
    }), { numRuns: 1000 });
  });
});

describe('request-target normalisation (property-based)', () => {
  const piece = fc.constantFrom('/', '/', '.', '..', 'a', 'Z9', '.well-known', 'x.json', '-_~', '%2e', '%2E%2e', '%41', '%2f', '%', '?', '?q=/../', '#', '\\', ' ', '\u0000', 'é');
  const target = fc.array(piece, { maxLength: 14 }).map((pieces) => pieces.join(''));

  it('yields a path with no empty, "." or ".." segment that normalises to itself', () => {
    fc.assert(fc.property(target, (raw) => {
      const result = normaliseTarget(raw);
      if (result === undefined) return;
      const segments = result.path.split('/').slice(1);
      const trailing = result.path.length > 1 && result.path.endsWith('/');
      for (const segment of trailing ? segments.slice(0, -1) : segments) {
        if (result.path === '/') break;
        assert.ok(segment !== '' && segment !== '.' && segment !== '..', `${JSON.stringify(raw)} → ${result.path}`);
      }
      assert.deepEqual(normaliseTarget(result.path + result.query), result, `${JSON.stringify(raw)} is not a fixed point`);
    }), { numRuns: 5000 });
  });

  it('leaves an already normal path as it is and resolves dot segments in any other', () => {
    assert.deepEqual(normaliseTarget('/.well-known/agent-card.json?x=1'), { path: '/.well-known/agent-card.json', query: '?x=1' });
    assert.deepEqual(normaliseTarget('/message'), { path: '/message', query: '' });
    assert.deepEqual(normaliseTarget('/health/../message'), { path: '/message', query: '' });
    assert.deepEqual(normaliseTarget('//message/.'), { path: '/message', query: '' });
    assert.deepEqual(normaliseTarget('/a/..b/c..'), { path: '/a/..b/c..', query: '' });
    assert.equal(normaliseTarget('/../message'), undefined);
    assert.equal(normaliseTarget('/%2e%2e/message'), undefined);
  });
});

describe('policy compiler and RBAC decisions (property-based)', () => {
  const shipped = ['orchestrator', 'extractor', 'validator', 'archivist', 'admin', 'mcp'] as const;
  const policies = shipped.map((service) => loadPolicy(shippedPolicyFile(service)));
  const roleNames = ['admin', 'lambda', 'orchestrator', 'document-processor', 'viewer', 'extractor', 'validator', 'archivist', 'root', '', 'Admin', '*'];

  it('never allows a method the service does not name, for any roles', () => {
    const method = fc.oneof(fc.string(), fc.constantFrom('delete_document', 'DELETE_DOCUMENT', 'get_document ', '*', 'tools/call', 'rpc.x'));
    fc.assert(fc.property(fc.constantFrom(...policies), fc.subarray(roleNames), method, (policy, roles, name) => {
      const decision = decide(policy, roles, { method: name, tool: undefined });
      if (!policy.methods.has(name)) assert.equal(decision.allowed, false);
      if (decision.allowed) assert.ok(roles.some((role) => policy.roles.has(role)));
    }), { numRuns: 3000 });
  });

  it('never allows delete_document or revoke_token to a caller holding the orchestrator role', () => {
    fc.assert(fc.property(fc.constantFrom(...policies), fc.subarray(roleNames), fc.constantFrom('delete_document', 'revoke_token'), (policy, roles, method) => {
      if (!roles.includes('orchestrator')) return;
      assert.equal(decide(policy, roles, { method }).allowed, false);
    }), { numRuns: 500 });
  });

  it('compiles random role grants without throwing and decides deny-by-default', () => {
    const name = fc.stringMatching(/^[a-z][a-z_]{0,8}$/);
    const pattern = fc.oneof(name, name.map((n) => `${n}*`), fc.constant('*'));
    fc.assert(fc.property(fc.dictionary(name, fc.record({ allow: fc.uniqueArray(pattern, { maxLength: 3 }), deny: fc.uniqueArray(pattern, { maxLength: 3 }) }), { minKeys: 1, maxKeys: 4 }), fc.uniqueArray(name, { minLength: 1, maxLength: 4 }), (roles, methods) => {
      const rbac = writePolicy(`roles:\n${Object.entries(roles).map(([role, grant]) => `  ${role}:\n    allow: ${JSON.stringify(grant.allow)}\n    deny: ${JSON.stringify(grant.deny)}`).join('\n')}\n`);
      const policy = loadPolicy(writePolicy(`service: prop\nrbac: ${rbac}\nupstream: http://127.0.0.1:1\nauth: { issuer: http://i/realms/x, audience: a }\nmethods:\n${methods.map((m) => `  ${m}: {}`).join('\n')}\n`));
      for (const method of [...methods, 'unlisted_method']) {
        for (const role of Object.keys(roles)) {
          const decision = decide(policy, [role], { method });
          const grant = roles[role] as { allow: string[]; deny: string[] };
          const matches = (patterns: string[]) => patterns.some((p) => new RegExp(`^${p.replace(/\*/g, '.*')}$`).test(method));
          const expected = methods.includes(method) && matches(grant.allow) && !matches(grant.deny);
          assert.equal(decision.allowed, expected, `${role} ${method} ${JSON.stringify(grant)}`);
        }
      }
    }), { numRuns: 100 });
  });
});
