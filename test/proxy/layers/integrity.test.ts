import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK, type JWTHeaderParameters } from 'jose';
import { contentDigest, sha256 } from '../../../proxy/integrity/digest.js';
import { createProof, createProofKey, type ProofKey } from '../../../proxy/integrity/proof.js';
import { LONGEST_PROOF_LIFE_SECONDS } from '../../../proxy/layers/replay.js';
import { signedHeaders } from '../../../proxy/client/signed-headers.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

describe('integrity layer (DPoP + Content-Digest) and replay layer', () => {
  let h: Harness;
  let key: ProofKey;
  let token: string;
  let url: string;
  before(async () => {
    h = await startHarness({ service: 'archivist', sidecar: { publicUrls: [] } });
    key = await createProofKey();
    token = await h.issuer.sign();
    url = `${h.sidecar.url}/message`;
  });
  after(() => h.close());

  const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }));

  async function send(headers: Record<string, string | string[]>, payload = body, scheme = 'Bearer', accessToken = token) {
    return h.call(payload, { headers: { authorization: `${scheme} ${accessToken}`, ...headers } });
  }

  async function expectRefused(headers: Record<string, string | string[]>, reason: string, status: number, payload = body, scheme = 'Bearer', accessToken = token) {
    const count = h.upstream.requests.length;
    const res = await send(headers, payload, scheme, accessToken);
    assert.equal(res.status, status, JSON.stringify(res.json));
    assert.equal(res.json.error?.data?.reason, reason);
    assert.equal(h.upstream.requests.length, count, 'never forwarded');
    return res;
  }

  it('forwards a request with a valid proof and digest', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const res = await send({ dpop, 'content-digest': contentDigest(body) });
    assert.equal(res.status, 200);
  });

  it('refuses a caller without a proof with 401 and -32014', async () => {
    const res = await expectRefused({ 'content-digest': contentDigest(body) }, 'integrity.proof_missing', 401);
    assert.equal(res.json.error?.code, -32014);
    assert.ok(h.audit.events('integrity_failure').length >= 1);
  });

  it('refuses a body changed after signing', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const tampered = body.replace(DOC_ID, '00000000-0000-4000-8000-000000000000');
    await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'integrity.digest_mismatch', 400, tampered);
  });

  it('refuses a changed body with a matching Content-Digest but the old htd', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const tampered = body.replace(DOC_ID, '00000000-0000-4000-8000-000000000000');
    await expectRefused({ dpop, 'content-digest': contentDigest(tampered) }, 'integrity.digest_mismatch', 400, tampered);
  });

  it('reads a repeated sha-256 member as RFC 8941 does (the last wins): a last one not matching the body is refused', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const stale = contentDigest(body.replace(DOC_ID, '00000000-0000-4000-8000-000000000000'));
    await expectRefused({ dpop, 'content-digest': `${contentDigest(body)}, ${stale}` }, 'integrity.digest_mismatch', 400);
  });

  it('refuses a missing or malformed Content-Digest', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    await expectRefused({ dpop }, 'integrity.digest_missing', 400);
    const again = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    await expectRefused({ dpop: again, 'content-digest': 'md5=:abc:' }, 'integrity.digest_missing', 400);
  });

  it('refuses the same proof twice with 409 and -32016, counted as a replay', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const headers = { dpop, 'content-digest': contentDigest(body) };
    assert.equal((await send(headers)).status, 200);
    const res = await expectRefused(headers, 'replay.duplicate_id', 409);
    assert.equal(res.json.error?.code, -32016);
    assert.ok(h.audit.events('replay_detected').length >= 1);
    assert.ok((await h.metric('ca_a2a_replays_total')) >= 1);
  });

  it('keeps each proof key\'s ids apart: a jti another key already used is no replay', async () => {
    const jti = crypto.randomUUID();
    const proofWith = (signer: ProofKey) => new SignJWT({ jti, htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000), ath: base64url.encode(sha256(token)), htd: base64url.encode(sha256(body)) })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: signer.publicJwk }).sign(signer.privateKey);
    const headers = async (signer: ProofKey) => ({ dpop: await proofWith(signer), 'content-digest': contentDigest(body) });
    assert.equal((await send(await headers(await createProofKey()))).status, 200);
    assert.equal((await send(await headers(key))).status, 200, 'another client cannot burn this key\'s ids');
    await expectRefused(await headers(key), 'replay.duplicate_id', 409);
  });

  it('refuses a proof for another URL or another method', async () => {
    const other = await createProof(key, { htm: 'POST', htu: `${h.sidecar.url}/other`, accessToken: token, body });
    await expectRefused({ dpop: other, 'content-digest': contentDigest(body) }, 'integrity.proof_mismatch', 401);
    const get = await createProof(key, { htm: 'GET', htu: url, accessToken: token, body });
    await expectRefused({ dpop: get, 'content-digest': contentDigest(body) }, 'integrity.proof_mismatch', 401);
  });

  it('refuses a proof for another path whatever the Host header carries (the expected htu is Host + the path requested)', async () => {
    const host = new URL(h.sidecar.url).host;
    for (const forged of [`${host}/other?`, `${host}/other#`, `x@${host}/other?`]) {
      const dpop = await createProof(key, { htm: 'POST', htu: `http://${host}/other`, accessToken: token, body });
      await expectRefused({ dpop, 'content-digest': contentDigest(body), host: forged }, 'integrity.proof_mismatch', 401);
    }
  });

  it('refuses a proof made for another access token (ath)', async () => {
    const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: await h.issuer.sign(), body });
    await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'integrity.proof_mismatch', 401);
  });

  it('refuses an old proof and one from the future', async () => {
    const old = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body, now: Date.now() - 400_000 });
    await expectRefused({ dpop: old, 'content-digest': contentDigest(body) }, 'integrity.proof_stale', 401);
    const future = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body, now: Date.now() + 60_000 });
    await expectRefused({ dpop: future, 'content-digest': contentDigest(body) }, 'integrity.proof_stale', 401);
  });

  it('refuses a proof signed with HS256, one with a private jwk, and a wrong typ', async () => {
    const claims = { jti: crypto.randomUUID(), htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000), ath: base64url.encode(sha256(token)), htd: base64url.encode(sha256(body)) };
    const hs = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } } as unknown as JWTHeaderParameters).sign(new TextEncoder().encode('secret'));
    await expectRefused({ dpop: hs, 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const leaky = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: privateJwk }).sign(privateKey);
    await expectRefused({ dpop: leaky, 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
    const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', jwk: key.publicJwk }).sign(key.privateKey);
    await expectRefused({ dpop: jwt, 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
  });

  // RSA verification costs grow with the modulus and the public exponent, both the client's
  // choice: a 3072-bit key with a 3072-bit exponent takes about 7 ms to check, about 50 ES256
  // proofs' worth, and a forged one costs as much to refuse.
  it('refuses an RSA proof key with a public exponent past 32 bits or a modulus past 4096 bits, and accepts an ordinary one', async () => {
    const proofWith = async (jwk: JWK, privateKey: CryptoKey | undefined): Promise<string> => {
      const claims = { jti: crypto.randomUUID(), htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000), ath: base64url.encode(sha256(token)), htd: base64url.encode(sha256(body)) };
      const header = { alg: 'RS256', typ: 'dpop+jwt', jwk };
      if (privateKey) return new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
      return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(claims))}.${base64url.encode(randomBytes(512))}`;
    };
    const ordinary = await generateKeyPair('RS256');
    const ordinaryJwk = await exportJWK(ordinary.publicKey);
    assert.equal((await send({ dpop: await proofWith(ordinaryJwk, ordinary.privateKey), 'content-digest': contentDigest(body) })).status, 200);

    const bigExponent = await rsaKeyWithLargeExponent();
    const res = await expectRefused({ dpop: await proofWith(bigExponent.publicJwk, bigExponent.privateKey), 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
    assert.match(String(res.json.error?.message), /RSA/);
    const bigModulus = { kty: 'RSA', n: base64url.encode(Buffer.concat([Buffer.from([0xff]), randomBytes(512)])), e: 'AQAB' };
    const large = await expectRefused({ dpop: await proofWith(bigModulus, undefined), 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
    assert.match(String(large.json.error?.message), /RSA/);
  });

  // Node's JWK import skips characters outside base64url ('.', '=', '%', whitespace), so one key
  // had endless spellings: each its own thumbprint and its own entry in the proof-key cache, as
  // long as the header allows (about 11 KB), 10 000 of them per policy version.
  it('refuses a proof key whose members are not in canonical base64url, whatever the key behind them', async () => {
    const claims = () => ({ jti: crypto.randomUUID(), htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000), ath: base64url.encode(sha256(token)), htd: base64url.encode(sha256(body)) });
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const { kty, crv, x, y } = await exportJWK(publicKey);
    for (const jwk of [{ kty, crv, x: `${x}${'.'.repeat(8_000)}`, y }, { kty, crv, x, y: `${y}==` }, { kty, crv, x: ` ${x}`, y }]) {
      const dpop = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(privateKey);
      const res = await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
      assert.match(String(res.json.error?.message), /base64url/);
    }
    const canonical = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty, crv, x, y } }).sign(privateKey);
    assert.equal((await send({ dpop: canonical, 'content-digest': contentDigest(body) })).status, 200);
  });

  it('refuses a proof whose jwk header is not a JSON object as invalid (401), not as an internal error', async () => {
    const claims = { jti: crypto.randomUUID(), htm: 'POST', htu: url, iat: Math.floor(Date.now() / 1000), ath: base64url.encode(sha256(token)), htd: base64url.encode(sha256(body)) };
    for (const jwk of [null, 'key', [key.publicJwk]]) {
      const dpop = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk } as unknown as JWTHeaderParameters).sign(key.privateKey);
      await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'integrity.proof_invalid', 401);
    }
  });

  it('refuses two DPoP headers', async () => {
    const a = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    const b = await createProof(key, { htm: 'POST', htu: url, accessToken: token, body });
    await expectRefused({ dpop: [a, b], 'content-digest': contentDigest(body) }, 'integrity.proof_missing', 401);
  });

  describe('sender-constrained tokens (cnf.jkt)', () => {
    let bound: string;
    before(async () => {
      bound = await h.issuer.sign({ cnf: { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') } });
    });

    it('accepts a bound token with the DPoP scheme and a proof from its key', async () => {
      const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: bound, body });
      assert.equal((await send({ dpop, 'content-digest': contentDigest(body) }, body, 'DPoP', bound)).status, 200);
    });

    it('refuses a token bound to key A with a proof from key B', async () => {
      const other = await createProofKey();
      const dpop = await createProof(other, { htm: 'POST', htu: url, accessToken: bound, body });
      await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'integrity.key_mismatch', 401, body, 'DPoP', bound);
    });

    it('refuses a token bound by a means it cannot check, rather than take it as a bearer token', async () => {
      const thumbprint = await calculateJwkThumbprint(key.publicJwk, 'sha256');
      for (const cnf of [{ 'x5t#S256': thumbprint }, { jkt: 42 }, { jkt: thumbprint, 'x5t#S256': thumbprint }, 'bound', null]) {
        const other = await h.issuer.sign({ cnf });
        for (const scheme of ['Bearer', 'DPoP']) {
          const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: other, body });
          const res = await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'authn.claim_invalid', 401, body, scheme, other);
          assert.match(String(res.json.error?.message), /cnf/, JSON.stringify(cnf));
        }
      }
    });

    it('refuses a bound token sent as Bearer (a stolen token is useless without the key)', async () => {
      const dpop = await createProof(key, { htm: 'POST', htu: url, accessToken: bound, body });
      await expectRefused({ dpop, 'content-digest': contentDigest(body) }, 'authn.dpop_required', 401, body, 'Bearer', bound);
    });
  });
});

/** A working 2048-bit RSA key pair whose public exponent is about as long as its modulus. */
async function rsaKeyWithLargeExponent(): Promise<{ publicJwk: JWK; privateKey: CryptoKey }> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const { n = '', p = '', q = '' } = await exportJWK(privateKey);
  const [bigP, bigQ] = [toBigInt(p), toBigInt(q)];
  const phi = (bigP - 1n) * (bigQ - 1n);
  let e = (toBigInt(n) >> 1n) | 1n;
  while (gcd(e, phi) !== 1n) e += 2n;
  const d = inverse(e, phi);
  const privateJwk = {
    kty: 'RSA', n, e: fromBigInt(e), d: fromBigInt(d), p, q,
    dp: fromBigInt(d % (bigP - 1n)), dq: fromBigInt(d % (bigQ - 1n)), qi: fromBigInt(inverse(bigQ, bigP)),
  };
  return { publicJwk: { kty: 'RSA', n, e: privateJwk.e }, privateKey: (await importJWK(privateJwk, 'RS256')) as CryptoKey };
}

const toBigInt = (value: string): bigint => BigInt(`0x${Buffer.from(value, 'base64url').toString('hex')}`);
const fromBigInt = (value: bigint): string => {
  const hex = value.toString(16);
  return base64url.encode(Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex'));
};
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? a : gcd(b, a % b));
function inverse(value: bigint, modulus: bigint): bigint {
  let [r0, r1, s0, s1] = [value % modulus, modulus, 1n, 0n];
  while (r1 !== 0n) {
    const quotient = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - quotient * r1, s1, s0 - quotient * s1];
  }
  return ((s0 % modulus) + modulus) % modulus;
}

describe('integrity behind a load balancer (--public-url)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ service: 'archivist', sidecar: { publicUrls: ['https://archivist.example.com'] } });
  });
  after(() => h.close());

  it('checks htu against the public URL, never the Host or X-Forwarded-* headers', async () => {
    const key = await createProofKey();
    const token = await h.issuer.sign();
    const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }));
    const digest = contentDigest(body);
    const viaPublic = await createProof(key, { htm: 'POST', htu: 'https://archivist.example.com/message', accessToken: token, body });
    assert.equal((await h.call(body, { headers: { authorization: `Bearer ${token}`, dpop: viaPublic, 'content-digest': digest } })).status, 200);
    const forged = await createProof(key, { htm: 'POST', htu: 'https://evil.example.com/message', accessToken: token, body });
    const res = await h.call(body, { headers: { authorization: `Bearer ${token}`, dpop: forged, 'content-digest': digest, 'x-forwarded-host': 'evil.example.com', 'x-forwarded-proto': 'https' } });
    assert.equal(res.json.error?.data?.reason, 'integrity.proof_mismatch');
    const viaHost = await createProof(key, { htm: 'POST', htu: `${h.sidecar.url}/message`, accessToken: token, body });
    assert.equal((await h.call(body, { headers: { authorization: `Bearer ${token}`, dpop: viaHost, 'content-digest': digest } })).json.error?.data?.reason, 'integrity.proof_mismatch');
  });
});

describe('replay across a reload that widens the proof window', () => {
  const policy = (maxAge: number): string => `service: replay-window
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
integrity: { dpop: required, proof_max_age_seconds: ${maxAge}, leeway_seconds: 5 }
methods:
  get_document: {}
`;

  it('remembers an id for the longest window the policy schema allows', () => {
    const schema = JSON.parse(readFileSync(new URL('../../../proxy/policy/schemas/service.schema.json', import.meta.url), 'utf8'));
    const integrity = schema.properties.integrity.properties;
    assert.equal(LONGEST_PROOF_LIFE_SECONDS, integrity.proof_max_age_seconds.maximum + integrity.leeway_seconds.maximum);
  });

  it('refuses a proof used under a 60 s window again after a reload to 300 s', async () => {
    let offsetMs = 0;
    const file = writePolicy(policy(60));
    const h = await startHarness({ policyFile: file, sidecar: { publicUrls: [], now: () => Date.now() + offsetMs } });
    try {
      const key = await createProofKey();
      const token = await h.issuer.sign();
      const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }));
      const headers = { authorization: `Bearer ${token}`, dpop: await createProof(key, { htm: 'POST', htu: `${h.sidecar.url}/message`, accessToken: token, body }), 'content-digest': contentDigest(body) };
      assert.equal((await h.call(body, { headers })).status, 200);
      // 100 s later the window is widened: the proof is fresh again under the new policy.
      offsetMs = 100_000;
      writeFileSync(file, policy(300));
      await h.sidecar.reload();
      assert.equal(h.sidecar.policy().integrity.proofMaxAgeSeconds, 300);
      const count = h.upstream.requests.length;
      const res = await h.call(body, { headers });
      assert.equal(res.status, 409, JSON.stringify(res.json));
      assert.equal(res.json.error?.data?.reason, 'replay.duplicate_id');
      assert.equal(h.upstream.requests.length, count, 'never forwarded');
    } finally {
      await h.close();
    }
  });
});

describe('integrity modes set by the policy', () => {
  const service = (integrity: string, methods = '  get_document: {}\n  delete_document: {}\n') => writePolicy(`service: integrity-modes
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
integrity: ${integrity}
methods:
${methods}`);
  const get = rpc('get_document', { document_id: DOC_ID });
  const del = rpc('delete_document', { document_id: DOC_ID });
  const admin = { realm_access: { roles: ['admin'] } };
  let off: Harness;
  let optional: Harness;
  let boundOnly: Harness;
  let lowered: Harness;
  before(async () => {
    off = await startHarness({ policyFile: service('{ dpop: off }', '  get_document: {}\n  delete_document: { integrity: required }\n') });
    optional = await startHarness({ policyFile: service('{ dpop: optional }'), issuer: off.issuer });
    boundOnly = await startHarness({ policyFile: service('{ dpop: required, require_bound_tokens: true }'), issuer: off.issuer });
    lowered = await startHarness({ policyFile: service('{ dpop: required }', '  get_document: { integrity: off }\n  delete_document: {}\n'), issuer: off.issuer });
  });
  after(async () => {
    await Promise.all([optional?.close(), boundOnly?.close(), lowered?.close()]);
    await off?.close();
  });

  /** A body with the caller's own headers (no proof unless given), and the reason it was refused for. */
  async function sent(h: Harness, body: unknown, headers: Record<string, string | string[]>): Promise<{ status: number; reason: unknown }> {
    const res = await h.call(body, { headers });
    return { status: res.status, reason: res.json.error?.data?.reason };
  }

  it('off: a call without a proof passes, but a method that requires one, alone or in a batch, does not', async () => {
    const token = await off.issuer.sign(admin);
    assert.deepEqual(await sent(off, get, { authorization: `Bearer ${token}` }), { status: 200, reason: undefined });
    assert.deepEqual(await sent(off, del, { authorization: `Bearer ${token}` }), { status: 401, reason: 'integrity.proof_missing' });
    assert.deepEqual(await sent(off, [get, { ...del, id: 2 }], { authorization: `Bearer ${token}` }), { status: 401, reason: 'integrity.proof_missing' }, 'the strictest mode of a batch applies');
    assert.equal((await off.call(del, { token })).status, 200, 'with a proof it passes');
  });

  it('a method\'s own mode overrides the service\'s, also when it is less strict; a batch with another method gets the strictest', async () => {
    const token = await lowered.issuer.sign(admin);
    assert.deepEqual(await sent(lowered, get, { authorization: `Bearer ${token}` }), { status: 200, reason: undefined });
    assert.deepEqual(await sent(lowered, del, { authorization: `Bearer ${token}` }), { status: 401, reason: 'integrity.proof_missing' });
    assert.deepEqual(await sent(lowered, [get, { ...del, id: 2 }], { authorization: `Bearer ${token}` }), { status: 401, reason: 'integrity.proof_missing' }, 'the strictest mode of a batch applies');
    const key = await createProofKey();
    const bound = await lowered.issuer.sign({ ...admin, cnf: { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') } });
    assert.deepEqual(await sent(lowered, get, { authorization: `DPoP ${bound}` }), { status: 401, reason: 'integrity.proof_missing' }, 'a bound token still needs its proof');
  });

  it('off: a token bound to a key still needs a proof from that key', async () => {
    const key = await createProofKey();
    const bound = await off.issuer.sign({ cnf: { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') } });
    assert.deepEqual(await sent(off, get, { authorization: `DPoP ${bound}` }), { status: 401, reason: 'integrity.proof_missing' });
    const body = JSON.stringify(get);
    const signed = await signedHeaders({ key, accessToken: bound, tokenType: 'DPoP', method: 'POST', url: `${off.sidecar.url}/message`, body });
    assert.deepEqual(await sent(off, body, signed), { status: 200, reason: undefined });
  });

  it('optional: a call without a proof passes, a proof that is present is checked', async () => {
    const token = await optional.issuer.sign();
    assert.deepEqual(await sent(optional, get, { authorization: `Bearer ${token}` }), { status: 200, reason: undefined });
    const body = JSON.stringify(get);
    const elsewhere = await signedHeaders({ key: await createProofKey(), accessToken: token, tokenType: 'Bearer', method: 'POST', url: `${optional.sidecar.url}/other`, body });
    assert.deepEqual(await sent(optional, body, elsewhere), { status: 401, reason: 'integrity.proof_mismatch' });
  });

  it('optional: a Content-Digest sent without a proof is checked all the same, and a wrong one is never forwarded', async () => {
    const token = await optional.issuer.sign();
    const body = JSON.stringify(get);
    const bearer = { authorization: `Bearer ${token}` };
    const count = optional.upstream.requests.length;
    assert.deepEqual(await sent(optional, body, { ...bearer, 'content-digest': contentDigest('{"another":"body"}') }), { status: 400, reason: 'integrity.digest_mismatch' });
    assert.deepEqual(await sent(optional, body, { ...bearer, 'content-digest': 'sha-256=abc' }), { status: 400, reason: 'integrity.digest_missing' });
    const twoLines = [contentDigest('{"another":"body"}'), contentDigest(body)];
    assert.deepEqual(await sent(optional, body, { ...bearer, 'content-digest': twoLines }), { status: 400, reason: 'integrity.digest_missing' }, 'two field lines');
    const signed = await signedHeaders({ key: await createProofKey(), accessToken: token, tokenType: 'Bearer', method: 'POST', url: `${optional.sidecar.url}/message`, body });
    assert.deepEqual(await sent(optional, body, { ...signed, 'content-digest': twoLines }), { status: 400, reason: 'integrity.digest_missing' }, 'two field lines beside a valid proof');
    assert.equal(optional.upstream.requests.length, count, 'never forwarded');
    assert.deepEqual(await sent(optional, body, { ...bearer, 'content-digest': contentDigest(body) }), { status: 200, reason: undefined });
  });

  it('require_bound_tokens: a valid proof with an unbound token is refused', async () => {
    const token = await boundOnly.issuer.sign();
    const body = JSON.stringify(get);
    const signed = await signedHeaders({ key: await createProofKey(), accessToken: token, tokenType: 'Bearer', method: 'POST', url: `${boundOnly.sidecar.url}/message`, body });
    assert.deepEqual(await sent(boundOnly, body, signed), { status: 401, reason: 'integrity.key_mismatch' });
    const key = await createProofKey();
    const bound = await boundOnly.issuer.sign({ cnf: { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') } });
    const ok = await signedHeaders({ key, accessToken: bound, tokenType: 'DPoP', method: 'POST', url: `${boundOnly.sidecar.url}/message`, body });
    assert.deepEqual(await sent(boundOnly, body, ok), { status: 200, reason: undefined });
  });
});
