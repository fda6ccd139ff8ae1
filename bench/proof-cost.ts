import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { signedHeaders } from '../proxy/client/signed-headers.js';
import { createContext } from '../proxy/context.js';
import { createProofKey } from '../proxy/integrity/proof.js';
import { integrityLayer } from '../proxy/layers/integrity.js';
import { loadPolicy } from '../proxy/policy/load.js';

/**
 * The cost of the integrity layer alone, per request, in process: creating a proof and digest
 * (what the egress side and `ca-a2a call` pay) and verifying them (the inbound layer), with the
 * proof key cached as a client reuses it.
 */
export async function proofCosts(iterations = 3000): Promise<string> {
  const key = await createProofKey();
  const token = 'x'.repeat(900);
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });
  const url = 'http://127.0.0.1:8004/message';
  let started = performance.now();
  const signed: Record<string, string>[] = [];
  for (let i = 0; i < iterations; i++) signed.push(await signedHeaders({ key, accessToken: token, tokenType: 'Bearer', method: 'POST', url, body }));
  const createUs = ((performance.now() - started) * 1000) / iterations;

  const policy = loadPolicy(new URL('policy-dpop.yaml', import.meta.url).pathname);
  const layer = integrityLayer(policy, { publicUrls: [], now: Date.now });
  const principal = { subject: 's', clientId: 'c', roles: [], jti: 'j', issuedAt: 0, expiresAt: 0, boundKeyThumbprint: undefined };
  const contexts = signed.map((headers) => {
    const req = new IncomingMessage(new Socket());
    req.method = 'POST';
    req.headers = { host: '127.0.0.1:8004', ...headers };
    req.rawHeaders = Object.entries(req.headers).flatMap(([name, value]) => [name, String(value)]);
    const ctx = createContext(req, policy, 'r', '127.0.0.1', 0);
    Object.assign(ctx, { path: '/message', body: Buffer.from(body), token, principal });
    return ctx;
  });
  started = performance.now();
  for (const ctx of contexts) {
    const verdict = await layer.check(ctx);
    if (verdict !== undefined) throw new Error(`proof refused in the benchmark: ${JSON.stringify(verdict)}`);
  }
  const verifyUs = ((performance.now() - started) * 1000) / iterations;
  return `Integrity per request, in process (ES256 proof + SHA-256 digests, ${iterations} requests): create ${createUs.toFixed(0)} µs (egress, \`ca-a2a call\`), verify ${verifyUs.toFixed(0)} µs (inbound layer, key cached).`;
}
