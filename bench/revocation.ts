import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import pg from 'pg';
import { request } from 'undici';
import { startAdminApi } from '../proxy/admin-api/start.js';
import { signedHeaders } from '../proxy/client/signed-headers.js';
import { createProofKey } from '../proxy/integrity/proof.js';
import type { Principal } from '../proxy/context.js';
import { shippedPolicyFile } from '../proxy/services.js';
import { startSidecar, type Sidecar } from '../proxy/sidecar.js';
import { dropKeysWithPrefix } from '../proxy/stores/redis.js';
import { RevocationSet } from '../proxy/stores/revocation-set.js';
import { startTestIssuer } from '../test/helpers/test-issuer.js';
import { startUpstream } from '../test/helpers/upstream.js';

export interface RevocationBenchOptions {
  readonly redisUrl?: string;
  readonly databaseUrl?: string;
  /** Lookups for the in-process check (default 1e6). */
  readonly lookups?: number;
  /** Revocations for the propagation measure (default 50). */
  readonly revocations?: number;
  /** Sidecars that must all refuse (default 3). */
  readonly sidecars?: number;
}

export interface RevocationBenchResult {
  readonly checkNsPerCall: number;
  readonly setSize: number;
  readonly propagationMs: { readonly p50: number; readonly p99: number; readonly max: number; readonly samples: number; readonly sidecars: number };
}

const silent = new Writable({ write: (_chunk, _encoding, done) => done() });

/**
 * (a) the hot-path revocation check (in-process set, 10k jtis + 1k subjects revoked) in ns per
 * call; (b) the time from the admin API's 200 to a 401 on every one of N running sidecars that
 * share Redis and PostgreSQL (a schema of its own, dropped afterwards).
 */
export async function benchRevocation(options: RevocationBenchOptions = {}): Promise<RevocationBenchResult> {
  const lookups = options.lookups ?? 1_000_000;
  const set = new RevocationSet();
  const future = Date.now() / 1000 + 3600;
  for (let i = 0; i < 10_000; i++) set.add({ kind: 'jti', jti: `revoked-${i}`, expiresAt: future });
  for (let i = 0; i < 1_000; i++) set.add({ kind: 'subject', subject: `gone-${i}`, revokedAt: 1_000, expiresAt: future });
  const principals: Principal[] = Array.from({ length: 1024 }, (_, i) => ({
    subject: `user-${i}`, clientId: 'c', roles: ['viewer'], jti: i % 10 === 0 ? `revoked-${i}` : `live-${i}`,
    issuedAt: 2_000, expiresAt: future, boundKeyThumbprint: undefined,
  }));
  let hits = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < lookups; i++) if (set.isRevoked(principals[i & 1023] as Principal)) hits++;
  const checkNsPerCall = Number(process.hrtime.bigint() - started) / lookups;
  if (hits === 0) throw new Error('benchmark lookups found nothing');

  const propagationMs = await benchPropagation(options);
  return { checkNsPerCall, setSize: set.size, propagationMs };
}

async function benchPropagation(options: RevocationBenchOptions) {
  const redisUrl = options.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const baseUrl = options.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const stores = { redisUrl, databaseUrl: url.toString(), keyPrefix: `ca-a2a-bench-${schema}` };

  const issuer = await startTestIssuer();
  const upstream = await startUpstream();
  const api = await startAdminApi({ listen: '127.0.0.1:0', stores, logDestination: silent });
  const sidecars: Sidecar[] = [];
  try {
    for (let i = 0; i < (options.sidecars ?? 3); i++) {
      sidecars.push(await startSidecar({ policyFile: shippedPolicyFile('archivist'), upstream: upstream.url, issuer: issuer.issuer, watchPolicy: false, logDestination: silent, stores }));
    }
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });
    const key = await createProofKey();
    // Each call is signed as a real client signs it (the archivist requires DPoP proofs).
    const call = async (sidecar: Sidecar, token: string): Promise<number | 'revoked'> => {
      const url = `${sidecar.url}/message`;
      const headers = await signedHeaders({ key, accessToken: token, tokenType: 'Bearer', method: 'POST', url, body });
      const res = await request(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
      const answer = (await res.body.json()) as { error?: { data?: { reason?: string } } };
      return answer.error?.data?.reason === 'authn.token_revoked' ? 'revoked' : res.statusCode;
    };
    const samples: number[] = [];
    for (let i = 0; i < (options.revocations ?? 50); i++) {
      const jti = `bench-${i}-${schema}`;
      const token = await issuer.sign({ jti });
      for (const sidecar of sidecars) if ((await call(sidecar, token)) !== 200) throw new Error('token refused before revocation');
      const res = await request(`${api.url}/admin/revoke-token`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-subject': 'bench' }, body: JSON.stringify({ jti, reason: 'bench' }) });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`revoke answered ${res.statusCode}`);
      const acknowledged = performance.now();
      const pending = new Set(sidecars);
      while (pending.size > 0) {
        if (performance.now() - acknowledged > 2_000) throw new Error('revocation not propagated within 2 s');
        await Promise.all([...pending].map(async (sidecar) => {
          if ((await call(sidecar, token)) === 'revoked') pending.delete(sidecar);
        }));
      }
      samples.push(performance.now() - acknowledged);
    }
    samples.sort((a, b) => a - b);
    const at = (p: number): number => samples[Math.min(samples.length - 1, Math.ceil(p * samples.length) - 1)] ?? 0;
    return { p50: at(0.5), p99: at(0.99), max: samples[samples.length - 1] ?? 0, samples: samples.length, sidecars: sidecars.length };
  } finally {
    await Promise.all(sidecars.map((sidecar) => sidecar.close()));
    await api.close();
    await upstream.close();
    await issuer.close();
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
    await dropKeysWithPrefix(redisUrl, stores.keyPrefix);
  }
}


if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await benchRevocation();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
