import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exportJWK, importJWK, jwtVerify } from 'jose';
import { createProof, createProofKey } from '../../../proxy/integrity/proof.js';

describe('proof keys (proxy/integrity/proof.ts)', () => {
  it('sign proofs their public JWK verifies, and their private half cannot be exported', async () => {
    const key = await createProofKey();
    const proof = await createProof(key, { htm: 'POST', htu: 'http://127.0.0.1:1/message', accessToken: 'token', body: '{}' });
    const { payload, protectedHeader } = await jwtVerify(proof, await importJWK(key.publicJwk, 'ES256'), { typ: 'dpop+jwt' });
    assert.equal(payload.htm, 'POST');
    assert.deepEqual(protectedHeader.jwk, key.publicJwk);
    assert.equal(key.privateKey.extractable, false);
    await assert.rejects(exportJWK(key.privateKey), /non-extractable|not extractable/i);
  });
});
