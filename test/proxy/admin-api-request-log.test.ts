import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { base64url } from 'jose';
import { request } from 'undici';
import { tokenShaped } from '../../proxy/admin-api/request-log.js';
import { startAdminApi, type AdminApi } from '../../proxy/admin-api/start.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { rpc } from '../helpers/harness.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const segment = (text: string): string => base64url.encode(text);
const claims = segment(JSON.stringify({ sub: 'ops-alice', jti: 'a-jti', exp: 2000000000 }));
const signature = 'c2lnbmF0dXJlIGJ5dGVzIG9mIGFuIFJTMjU2IGtleSwgbm90IGEgcmVhbCBvbmU';

/** Credentials as they could reach the admin API where an identifier belongs; not one starts with eyJ. */
const CREDENTIALS: Record<string, string> = {
  'a JWS whose header has a blank after the brace': `${segment('{ "alg": "RS256", "kid": "k1" }')}.${claims}.${signature}`,
  'a JWS whose header starts with a newline': `${segment('\n{"alg":"RS256"}')}.${claims}.${signature}`,
  'a JWS whose header starts with a BOM': `${segment('\uFEFF{"alg":"RS256"}')}.${claims}.${signature}`,
  'a JWS whose header has its kid first': `${segment('{"kid":"k1","alg":"RS256"}')}.${claims}.${signature}`,
  'a JWS payload and signature with the header cut off': `${claims}.${signature}`,
  'a token inside a sentence': `revoke ${segment('{ "typ":"at+jwt","alg":"RS256"}')}.${claims}.${signature} please`,
  'an opaque access token (RFC 6749 §7.1 style)': 'mF_9.B5f-4.1JqM'.replace(/\./g, '') + 'tGzB8x2Jw0a5Lk3Qp9Vr7Yc1',
  'an API key': 'sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z',
  'a base64 secret with padding': 'Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZmdo==',
  'a bearer credential, scheme and all': 'Bearer 2YotnFZFEjr1zCsicMWpAA',
  'a DPoP credential in lower case': 'dpop abcdefgh12345678',
  'basic credentials': 'Basic dXNlcjpwYXNzd29yZA==',
};

/** Identifiers that must still be logged as they are. */
const IDENTIFIERS = [
  '3f1d2c4b-5a6e-4f70-8192-a3b4c5d6e7f8',
  'tp0toXAIesC68A5iYTcDG',
  'onrtcc:3f1d2c4b-5a6e-4f70-8192-a3b4c5d6e7f8',
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  'service-account-orchestrator',
  'ops-alice',
  'svc.example.com',
  'eyes.example.org',
  '2016-12-31T23:59:59Z',
  '/admin/revoke-token',
  'Basic Bob',
  'logged-target',
];

describe('admin API request log: what counts as a token', () => {
  for (const [name, value] of Object.entries(CREDENTIALS)) {
    it(`redacts ${name}`, () => {
      assert.equal(tokenShaped(value), true, value);
    });
  }

  it('keeps identifiers: UUIDs, short jtis, digests, service accounts, host names, dates, paths', () => {
    for (const value of IDENTIFIERS) assert.equal(tokenShaped(value), false, value);
  });

  it('judges a long value in time linear in its length', () => {
    // 60 000 characters in one run with no dot and one class: a backtracking scan would take minutes.
    for (const value of ['a'.repeat(60_000), `${'a'.repeat(60_000)}!`, `${'a1'.repeat(30_000)}.`]) assert.equal(tokenShaped(value), false);
  });
});

describe('admin API request log: tokens pasted where an identifier belongs', () => {
  let api: AdminApi;
  let audit: AuditCapture;

  before(async () => {
    audit = new AuditCapture();
    api = await startAdminApi({ listen: '127.0.0.1:0', stores: { dataDir: tempDirSync('admin-log') }, logDestination: audit });
  });
  after(async () => {
    await api?.close();
  });

  async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
    const res = await request(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    await res.body.dump();
    return res.statusCode;
  }

  it('logs none of them in a refusal, in any field, and still logs identifiers', async () => {
    for (const value of Object.values(CREDENTIALS)) {
      // No reason: refused, and the line names what was asked.
      assert.equal(await post('/admin/revoke-token', { jti: value }, { 'x-ca-a2a-subject': value, 'x-ca-a2a-request-id': value }), 400);
      const line = audit.events('admin_request_refused').at(-1);
      assert.equal(line?.target_jti, '[token-shaped value not logged]', value);
      assert.equal(line?.subject, '[token-shaped value not logged]', value);
      assert.equal(line?.request_id, '[token-shaped value not logged]', value);
      await post('/message', rpc('revoke_subject', { subject: value }));
      assert.equal(audit.events('admin_request_refused').at(-1)?.target_subject, '[token-shaped value not logged]', value);
    }
    const text = audit.text();
    for (const value of Object.values(CREDENTIALS)) {
      const secret = value.replace(/^(bearer|dpop|basic) /i, '').replace(/^revoke (\S+) please$/, '$1');
      assert.ok(!text.includes(secret.slice(-20)), `no part of ${secret} in the log`);
    }
    assert.equal(await post('/admin/revoke-token', { jti: 'tp0toXAIesC68A5iYTcDG' }), 400);
    assert.equal(audit.events('admin_request_refused').at(-1)?.target_jti, 'tp0toXAIesC68A5iYTcDG');
  });

});
