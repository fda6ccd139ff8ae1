import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { benchMcpPolicy } from './mcp-policy.js';
import { freePort } from './ports.js';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import pg from 'pg';
import { Pool } from 'undici';
import { createDiskStore } from '../mcp/backends/disk-store.js';
import { GET_DOCUMENT_SQL } from '../mcp/tools/document-rows.js';
import { signedHeaders } from '../proxy/client/signed-headers.js';
import { createProofKey } from '../proxy/integrity/proof.js';
import { startBenchIssuer } from './jwks.js';

/**
 * The MCP gateway's cost: `documents_get` of an existing document read directly with pg, through
 * the gateway's /call_tool, and through the mcp sidecar (shipped policy; token, fresh DPoP proof
 * and Content-Digest per request) in front of the gateway, on real PostgreSQL; then a 1 MiB
 * s3_get_object through sidecar + gateway against reading it from the local-disk bucket. Two
 * floors put each hop in proportion: the same SELECT behind one plain node:http exchange (what any
 * HTTP service around pg costs), and the bare Node hop in front of the gateway (what any proxy in
 * the sidecar's place costs).
 * Gateway and sidecar run as child processes (`ca-a2a mcp-gateway`, `ca-a2a sidecar`); the
 * closed-loop load (same harness for every path) runs here. Standalone:
 * `npm run bench:mcp` (BENCH_MCP_DURATION seconds per run, default 5).
 */
const exec = promisify(execFile);
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const CONCURRENCY = 8;
const BIG_BYTES = 1024 * 1024;
const BIG_ROUNDS = 40;

export interface BenchMcpOptions {
  /** Seconds measured per path (after a 1 s warm-up). Default 5. */
  duration?: number;
}

interface Run { count: number; seconds: number; p50: number; p99: number; max: number; failures: number }
interface Runs { pg: Run; floor: Run; gateway: Run; bare: Run; sidecar: Run }

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
}

/**
 * Closed loop: `concurrency` workers each await `op` back to back for `seconds` (or until `op`
 * answers false: out of pre-signed proofs). Latency per op in ms.
 */
async function closedLoop(op: () => Promise<boolean>, seconds: number, concurrency = CONCURRENCY): Promise<Run> {
  const latencies: number[] = [];
  let failures = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let exhausted = false;
  const worker = async (): Promise<void> => {
    while (!exhausted && performance.now() < deadline) {
      const t0 = performance.now();
      let ok: boolean;
      try {
        ok = await op();
      } catch {
        failures++;
        continue;
      }
      if (ok) latencies.push(performance.now() - t0);
      else exhausted = true;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return { count: latencies.length, seconds: elapsed, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: percentile(sorted, 100), failures };
}

/** Resident set size in MB: /proc on Linux (cheap enough to sample often), else ps. */
async function rssMb(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kb = status === undefined ? undefined : /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb !== undefined) return Number(kb) / 1024;
  const { stdout } = await exec('ps', ['-o', 'rss=', '-p', String(pid)]);
  return Number(stdout.trim()) / 1024;
}

/** Samples a process's RSS every 10 ms while `work` runs; resolves to [before, peak] in MB. */
async function peakRss(pid: number | undefined, work: () => Promise<void>): Promise<[number, number]> {
  const before = await rssMb(pid);
  let peak = before;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssMb(pid).catch(() => peak));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  try {
    await work();
  } finally {
    running = false;
    await sampler;
  }
  return [before, peak];
}

async function startChild(args: string[], env: NodeJS.ProcessEnv, ready: () => Promise<boolean>, children: ChildProcess[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  children.push(child);
  for (let i = 0; i < 1500; i++) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
    if (await ready().catch(() => false)) return child;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${args.join(' ')} did not become ready`);
}

const ms = (value: number): string => value.toFixed(2);

/** Runs the MCP benchmark and returns a markdown section for docs/performance.md. */
export async function benchMcp(options: BenchMcpOptions = {}): Promise<string> {
  const duration = options.duration ?? 5;
  const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `mcp_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const schemaUrl = new URL(baseUrl);
  schemaUrl.searchParams.set('options', `-c search_path=${schema}`);

  const children: ChildProcess[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-bench-mcp-'));
  const issuer = await startBenchIssuer();
  const pools: Pool[] = [];
  let direct: pg.Pool | undefined;
  try {
    const policyFile = join(dataDir, 'mcp.yaml');
    await writeFile(policyFile, benchMcpPolicy(here('../policies/rbac.yaml')));

    const gatewayPort = await freePort();
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    const gateway = await startChild(
      // One caller (the bench's) sends CONCURRENCY calls at once: its per-caller bound (half the
      // pool by default) raised to that, so no call waits behind the bench's own.
      [here('../bin/ca-a2a.js'), 'mcp-gateway', '--listen', `127.0.0.1:${gatewayPort}`, '--data-dir', dataDir, '--db-per-caller', String(CONCURRENCY)],
      { DATABASE_URL: schemaUrl.toString() },
      async () => (await fetch(`${gatewayUrl}/health`)).status === 200,
      children,
    );
    const sidecarPort = await freePort();
    const adminPort = await freePort();
    const sidecarUrl = `http://127.0.0.1:${sidecarPort}`;
    const sidecar = await startChild(
      [here('../bin/ca-a2a.js'), 'sidecar', '--policy', policyFile, '--listen', `127.0.0.1:${sidecarPort}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--upstream', gatewayUrl, '--issuer', issuer.issuer, '--no-watch'],
      {},
      async () => (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status === 200,
      children,
    );

    // The floors: the same SELECT behind one plain node:http exchange, and the bare Node hop
    // (node:http in, undici out, no checks; bench/bare-proxy.ts) in front of the gateway.
    const floorPort = await freePort();
    await startChild(['--import', 'tsx', here('pg-http.ts'), String(floorPort), schemaUrl.toString()], {}, async () => (await fetch(`http://127.0.0.1:${floorPort}/`, { method: 'POST', body: '{}' })).status > 0, children);
    const barePort = await freePort();
    await startChild(['--import', 'tsx', here('bare-proxy.ts'), String(barePort), gatewayUrl], {}, async () => (await fetch(`http://127.0.0.1:${barePort}/health`, { method: 'POST', body: '{}' })).status > 0, children);

    // Seed: one document and one 1 MiB object, written through the gateway itself.
    const gatewayPool = new Pool(gatewayUrl, { connections: CONCURRENCY });
    const sidecarPool = new Pool(sidecarUrl, { connections: CONCURRENCY });
    const floorPool = new Pool(`http://127.0.0.1:${floorPort}`, { connections: CONCURRENCY });
    const barePool = new Pool(`http://127.0.0.1:${barePort}`, { connections: CONCURRENCY });
    pools.push(gatewayPool, sidecarPool, floorPool, barePool);
    const callTool = async (pool: Pool, tool: string, args: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> => {
      const res = await pool.request({ path: '/call_tool', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ tool, arguments: args }) });
      return { status: res.statusCode, body: await res.body.text() };
    };
    const big = randomBytes(BIG_BYTES);
    const bigKey = 'uploads/bench/one-mib.bin';
    const documentId = randomUUID();
    const seeded = [
      await callTool(gatewayPool, 's3_put_object', { key: bigKey, content_base64: big.toString('base64'), content_type: 'application/octet-stream' }),
      await callTool(gatewayPool, 'documents_create', { document_id: documentId, filename: 'one-mib.bin', content_type: 'application/octet-stream', s3_key: bigKey, size_bytes: BIG_BYTES, sha256: createHash('sha256').update(big).digest('hex') }),
    ];
    for (const answer of seeded) if (answer.status !== 200) throw new Error(`seeding failed: ${answer.status} ${answer.body.slice(0, 200)}`);

    // (a) documents_get, three ways, loaded (8 in flight) and then one at a time (the unloaded cost of each hop).
    direct = new pg.Pool({ connectionString: schemaUrl.toString(), max: CONCURRENCY });
    const pgOp = async (): Promise<boolean> => (await (direct as pg.Pool).query(GET_DOCUMENT_SQL, [documentId])).rowCount === 1;
    const getBody = JSON.stringify({ tool: 'documents_get', arguments: { document_id: documentId } });
    const postGet = async (pool: Pool, headers: Record<string, string>): Promise<boolean> => {
      const res = await pool.request({ path: '/call_tool', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: getBody });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      return true;
    };
    // Pre-signed proofs (one per request, as a client signs each call): signing is the client's cost, not measured here.
    const token = await issuer.sign({ sub: 'bench-admin', azp: 'admin', realm_access: { roles: ['admin'] } });
    const key = await createProofKey();
    const sign = (body: string) => signedHeaders({ key, accessToken: token, tokenType: 'Bearer', method: 'POST', url: `${sidecarUrl}/call_tool`, body });
    const measureAll = async (concurrency: number, seconds: number): Promise<Runs> => {
      await closedLoop(pgOp, 1, concurrency);
      const pgRun = await closedLoop(pgOp, seconds, concurrency);
      await closedLoop(() => postGet(floorPool, {}), 1, concurrency);
      const floorRun = await closedLoop(() => postGet(floorPool, {}), seconds, concurrency);
      await closedLoop(() => postGet(gatewayPool, {}), 1, concurrency);
      const gatewayRun = await closedLoop(() => postGet(gatewayPool, {}), seconds, concurrency);
      await closedLoop(() => postGet(barePool, {}), 1, concurrency);
      const bareRun = await closedLoop(() => postGet(barePool, {}), seconds, concurrency);
      // The sidecar path is slower than the gateway alone, so the gateway's rate bounds the proofs needed.
      const proofs: Record<string, string>[] = [];
      const needed = Math.ceil(Math.max(1_000, gatewayRun.count / gatewayRun.seconds) * 1.3 * (seconds + 1));
      for (let i = 0; i < needed; i++) proofs.push(await sign(getBody));
      const sidecarOp = async (): Promise<boolean> => {
        const headers = proofs.pop();
        return headers === undefined ? false : postGet(sidecarPool, headers);
      };
      await closedLoop(sidecarOp, 1, concurrency);
      return { pg: pgRun, floor: floorRun, gateway: gatewayRun, bare: bareRun, sidecar: await closedLoop(sidecarOp, seconds, concurrency) };
    };
    const loaded = await measureAll(CONCURRENCY, duration);
    const sidecarRss = await rssMb(sidecar.pid);
    const gatewayRss = await rssMb(gateway.pid);
    const single = await measureAll(1, Math.max(2, Math.round(duration * 0.6)));

    // (b) one 1 MiB object: from the local-disk bucket directly, and through sidecar + gateway.
    const store = await createDiskStore(join(dataDir, 'bucket'));
    const signal = new AbortController().signal;
    const storeOp = async (): Promise<boolean> => {
      const found = await store.get(bigKey, 10 * BIG_BYTES, signal);
      return found !== undefined && (await buffer(found.body)).length === BIG_BYTES;
    };
    await closedLoop(storeOp, 0.3, 1);
    const storeRun = await closedLoop(storeOp, 1, 1);
    await store.close();

    const bigBody = JSON.stringify({ tool: 's3_get_object', arguments: { key: bigKey } });
    const bigProofs: Record<string, string>[] = [];
    for (let i = 0; i < BIG_ROUNDS + 5; i++) bigProofs.push(await sign(bigBody));
    let decodedOk = true;
    const bigOp = async (): Promise<boolean> => {
      const headers = bigProofs.pop();
      if (headers === undefined) return false;
      const res = await sidecarPool.request({ path: '/call_tool', method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: bigBody });
      const answer = (await res.body.json()) as { content_base64?: string };
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      decodedOk &&= Buffer.from(answer.content_base64 ?? '', 'base64').equals(big);
      return true;
    };
    for (let i = 0; i < 5; i++) await bigOp();
    let bigRun: Run | undefined;
    let gatewayDelta = 0;
    const [sidecarBefore, sidecarPeak] = await peakRss(sidecar.pid, async () => {
      const [gatewayBefore, gatewayPeak] = await peakRss(gateway.pid, async () => {
        bigRun = await closedLoop(bigOp, 60, 1);
      });
      gatewayDelta = gatewayPeak - gatewayBefore;
    });
    const sidecarDelta = sidecarPeak - sidecarBefore;
    const big1 = bigRun as Run;

    const rps = (run: Run): string => Math.round(run.count / run.seconds).toString();
    const added = (value: number): string => `${value >= 0 ? '+' : '−'}${ms(Math.abs(value))}`;
    const row = (name: string, run: Run, base?: Run): string =>
      `| ${name} | ${rps(run)} | ${ms(run.p50)} | ${ms(run.p99)} | ${base ? added(run.p50 - base.p50) : '-'} | ${base ? added(run.p99 - base.p99) : '-'} | ${run.failures} |`;
    const table = (runs: Runs): string[] => [
      '| path | req/s | p50 ms | p99 ms | added p50 vs pg | added p99 vs pg | failures |',
      '|---|---:|---:|---:|---:|---:|---:|',
      row('pg Pool, parameterised SELECT (direct)', runs.pg),
      row('floor: one plain node:http exchange around the same SELECT', runs.floor, runs.pg),
      row('gateway POST /call_tool (no sidecar)', runs.gateway, runs.pg),
      row('floor: bare Node hop + gateway (no checks in front)', runs.bare, runs.pg),
      row('sidecar + gateway POST /call_tool (DPoP + digest)', runs.sidecar, runs.pg),
      '',
      `Gateway over its floor (plain node:http + pg): ${added(runs.gateway.p50 - runs.floor.p50)} ms p50, ${added(runs.gateway.p99 - runs.floor.p99)} ms p99. ` +
        `Sidecar over the bare Node hop in the same place: ${added(runs.sidecar.p50 - runs.bare.p50)} ms p50, ${added(runs.sidecar.p99 - runs.bare.p99)} ms p99. ` +
        `Sidecar alone (sidecar + gateway vs gateway): ${added(runs.sidecar.p50 - runs.gateway.p50)} ms p50, ${added(runs.sidecar.p99 - runs.gateway.p99)} ms p99.`,
    ];
    const cpu = cpus()[0]?.model ?? 'cpu';
    return [
      '## MCP gateway: documents and objects through the sidecar',
      '',
      `Machine: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; PostgreSQL on 127.0.0.1; gateway, sidecar, PostgreSQL and the load loop share the cores (no pinning). ` +
        `Closed loop (undici Pool, keep-alive; pg Pool), 1 s warm-up per path. ` +
        'The sidecar runs the shipped `policies/services/mcp.yaml` with only the rate limit raised, and the gateway with its per-caller bound raised to the 8 calls the benchmark sends at once; every request through it carries a token (admin role), its own pre-signed DPoP proof and a Content-Digest.',
      '',
      `\`documents_get\` of one existing document, ${CONCURRENCY} requests in flight, ${duration} s per path:`,
      '',
      ...table(loaded),
      `RSS after this run: sidecar ${sidecarRss.toFixed(0)} MB, gateway ${gatewayRss.toFixed(0)} MB.`,
      '',
      `The same, one request at a time (${single.pg.seconds.toFixed(0)} s per path): the unloaded cost of each hop.`,
      '',
      ...table(single),
      '',
      `One 1 MiB object (\`s3_get_object\`, local-disk bucket), one request at a time (${storeRun.count} reads direct in 1 s; ${big1.count} through sidecar + gateway):`,
      '',
      '| path | p50 ms | max ms | MiB/s |',
      '|---|---:|---:|---:|',
      `| disk store \`get()\` in process (direct) | ${ms(storeRun.p50)} | ${ms(storeRun.max)} | ${(storeRun.count / storeRun.seconds).toFixed(0)} |`,
      `| sidecar + gateway POST /call_tool, base64 in JSON, decoded and compared | ${ms(big1.p50)} | ${ms(big1.max)} | ${(big1.count / big1.seconds).toFixed(0)} |`,
      '',
      `Peak RSS growth during the 1 MiB run: gateway +${gatewayDelta.toFixed(0)} MB, sidecar +${sidecarDelta.toFixed(0)} MB (RSS sampled every 10 ms). Every answer decoded to the stored bytes: ${decodedOk ? 'yes' : 'NO'}.`,
    ].join('\n');
  } finally {
    await direct?.end();
    for (const pool of pools) await pool.close();
    for (const child of children) child.kill();
    issuer.close();
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)));
    const cleanup = new pg.Client({ connectionString: baseUrl });
    await cleanup.connect();
    await cleanup.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await cleanup.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`${await benchMcp({ duration: Number(process.env.BENCH_MCP_DURATION ?? 5) })}\n`);
}
