import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBenchIssuer } from './jwks.js';
import { benchEgress } from './egress.js';
import { proofCosts } from './proof-cost.js';
import { benchRevocation } from './revocation.js';

/**
 * `npm run bench`: the same JSON-RPC load, back to back, against the demo agent directly, through
 * a bare Node hop, through a naive jose proxy, and through the sidecar (every layer on; then with
 * DPoP proofs too). The proxy under test is pinned to core 0 with taskset; the load generator and
 * the agent share core 1, so figures are per proxy core. Prints a markdown table for
 * docs/performance.md. BENCH_DURATION (s, default 10) and BENCH_CONNECTIONS (default 64).
 */
const exec = promisify(execFile);
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
const pin = await exec('taskset', ['-c', '0', 'true']).then(() => true, () => false);
const children: ChildProcess[] = [];

interface LoadResult { rps: number; p50: number; p99: number; non2xx: number; errors: number; total: number }

async function probeStores(): Promise<Record<string, string>> {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const up = await exec('redis-cli', ['-u', redisUrl, 'ping']).then(() => true, () => false);
  return up ? { REDIS_URL: redisUrl, DATABASE_URL: databaseUrl } : {};
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts a child (pinned to `core` when taskset works) and waits until `ready` says so. */
async function start(args: string[], core: number, ready: () => Promise<boolean>, env: Record<string, string> = {}): Promise<{ child: ChildProcess; readyMs: number }> {
  const command = pin ? 'taskset' : process.execPath;
  const argv = pin ? ['-c', String(core), process.execPath, ...args] : args;
  const started = performance.now();
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  children.push(child);
  for (let i = 0; i < 3000; i++) {
    if (await ready().catch(() => false)) return { child, readyMs: performance.now() - started };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${args.join(' ')} did not become ready`);
}

const listening = (port: number, path = '/') => async () => (await fetch(`http://127.0.0.1:${port}${path}`, { method: path === '/' ? 'POST' : 'GET' })).status > 0;

/**
 * A short unmeasured run first: JIT and lazily compiled modules warm up, as in a long-running
 * service. With `pid`, also the CPU time that process spent per request during the measured run:
 * steadier than a throughput ratio on a shared machine, and what the proxy costs by itself.
 */
async function measure(config: Record<string, unknown>, pid?: number): Promise<LoadResult & { cpuUsPerRequest?: number }> {
  await load({ ...config, duration: 2, ...(config.proofs ? { proofs: 12_000 } : {}) });
  const before = pid === undefined ? 0 : await cpuSeconds(pid);
  const result = await load(config);
  if (pid === undefined || result.total === 0) return result;
  return { ...result, cpuUsPerRequest: ((await cpuSeconds(pid)) - before) * 1e6 / result.total };
}

/** User + system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function load(config: Record<string, unknown>): Promise<LoadResult> {
  const args = ['--import', 'tsx', here('load.ts'), JSON.stringify({ connections, duration, ...config })];
  const { stdout } = await exec(pin ? 'taskset' : process.execPath, pin ? ['-c', '1', process.execPath, ...args] : args, { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as LoadResult;
}

async function rss(pid: number | undefined): Promise<number> {
  const { stdout } = await exec('ps', ['-o', 'rss=', '-p', String(pid)]);
  return Number(stdout.trim()) / 1024;
}

// The production configuration: shared stores on Redis and PostgreSQL (this machine's, unless set).
const sharedStores: Record<string, string> = await probeStores();
const dataDir = mkdtempSync(join(tmpdir(), 'ca-a2a-bench-'));
const issuer = await startBenchIssuer();
const token = await issuer.sign();
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });
const upstreamPort = await freePort();
await start(['--import', 'tsx', here('upstream.ts'), String(upstreamPort)], 1, listening(upstreamPort));
const upstream = `http://127.0.0.1:${upstreamPort}`;

const rows: { name: string; result: LoadResult & { cpuUsPerRequest?: number }; rssMb?: number; readyMs?: number }[] = [];
try {
  rows.push({ name: 'direct to the agent', result: await measure({ url: `${upstream}/message`, body }) });

  const barePort = await freePort();
  const bare = await start(['--import', 'tsx', here('bare-proxy.ts'), String(barePort), upstream], 0, listening(barePort));
  rows.push({ name: 'bare Node hop (node:http + undici)', result: await measure({ url: `http://127.0.0.1:${barePort}/message`, body }, bare.child.pid), rssMb: await rss(bare.child.pid) });
  bare.child.kill();

  const naivePort = await freePort();
  const naive = await start(['--import', 'tsx', here('naive-proxy.ts'), String(naivePort), upstream, issuer.issuer], 0, listening(naivePort));
  rows.push({ name: 'naive proxy (jose jwtVerify per request)', result: await measure({ url: `http://127.0.0.1:${naivePort}/message`, body, token }, naive.child.pid), rssMb: await rss(naive.child.pid) });
  naive.child.kill();

  const variants = [
    ['sidecar, every layer (embedded stores)', 'policy.yaml', {}],
    ['sidecar, every layer (Redis + PostgreSQL stores)', 'policy.yaml', sharedStores],
    ['sidecar, every layer + DPoP proof + digest (Redis + PostgreSQL)', 'policy-dpop.yaml', sharedStores],
  ] as const;
  for (const [name, policy, env] of variants) {
    if (env === sharedStores && !sharedStores.REDIS_URL) continue;
    const port = await freePort();
    const admin = await freePort();
    const sidecar = await start(
      [here('../bin/ca-a2a.js'), 'sidecar', '--policy', here(policy), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--upstream', upstream, '--issuer', issuer.issuer, '--no-watch'],
      0,
      async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200,
      { CA_A2A_DATA_DIR: dataDir, CA_A2A_KEY_PREFIX: `bench-${process.pid}`, ...env },
    );
    const withProofs = policy === 'policy-dpop.yaml' ? 6_000 * duration : 0;
    const result = await measure({ url: `http://127.0.0.1:${port}/message`, body, token, proofs: withProofs || undefined }, sidecar.child.pid);
    rows.push({ name, result, rssMb: await rss(sidecar.child.pid), readyMs: sidecar.readyMs });
    sidecar.child.kill();
  }

  // Added latency at half the sidecar's maximum rate: direct and through the sidecar at that rate.
  // The rate run uses the production stores when they are there, so half of that row's maximum.
  const sidecarMax = rows.filter((row) => row.name.startsWith('sidecar, every layer (')).at(-1)?.result.rps ?? 0;
  const rate = Math.max(100, Math.floor(sidecarMax / 2));
  const port = await freePort();
  const admin = await freePort();
  const sidecar = await start([here('../bin/ca-a2a.js'), 'sidecar', '--policy', here('policy.yaml'), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--upstream', upstream, '--issuer', issuer.issuer, '--no-watch'], 0, async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200, { CA_A2A_DATA_DIR: dataDir, CA_A2A_KEY_PREFIX: `bench-${process.pid}`, ...sharedStores });
  const directAtRate = await measure({ url: `${upstream}/message`, body, rate, connections: 8 });
  const sidecarAtRate = await measure({ url: `http://127.0.0.1:${port}/message`, body, token, rate, connections: 8 }, sidecar.child.pid);
  sidecar.child.kill();

  const base = rows[0]?.result.rps ?? 1;
  const bareRps = rows[1]?.result.rps ?? 1;
  const naiveRps = rows[2]?.result.rps ?? 1;
  const lines = [
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; proxy pinned to core 0: ${pin ? 'yes' : 'no (taskset unavailable)'}; ${connections} connections, ${duration} s per run; ${new Date().toISOString().slice(0, 10)}`,
    '',
    '| path | req/s | p50 ms | p99 ms | vs direct | vs bare hop | vs naive | proxy CPU µs/req | non-2xx | RSS MB | ready ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(({ name, result, rssMb, readyMs }) => `| ${name} | ${Math.round(result.rps)} | ${result.p50} | ${result.p99} | ${(result.rps / base).toFixed(2)} | ${(result.rps / bareRps).toFixed(2)} | ${(result.rps / naiveRps).toFixed(2)} | ${result.cpuUsPerRequest?.toFixed(0) ?? '-'} | ${result.non2xx} | ${rssMb?.toFixed(0) ?? '-'} | ${readyMs?.toFixed(0) ?? '-'} |`),
    '',
    `Added latency at half the sidecar's maximum rate (${rate} req/s open loop on 8 connections, latency from each request's due time, Redis + PostgreSQL stores): p50 ${(sidecarAtRate.p50 - directAtRate.p50).toFixed(2)} ms, p99 ${(sidecarAtRate.p99 - directAtRate.p99).toFixed(2)} ms (direct p99 ${directAtRate.p99} ms, through the sidecar ${sidecarAtRate.p99} ms); the sidecar spent ${sidecarAtRate.cpuUsPerRequest?.toFixed(0) ?? '-'} µs of CPU per request, its core ${sidecarAtRate.cpuUsPerRequest === undefined ? '-' : Math.round((sidecarAtRate.cpuUsPerRequest * rate) / 1e4)} % busy.`,
  ];
  lines.push('', await proofCosts());
  lines.push('', await benchEgress(Math.min(duration, 5)));
  if (sharedStores.REDIS_URL) {
    const revocation = await benchRevocation({ redisUrl: sharedStores.REDIS_URL, databaseUrl: sharedStores.DATABASE_URL });
    lines.push('', `Revocation: in-process check ${revocation.checkNsPerCall.toFixed(0)} ns per request (${revocation.setSize} revocations loaded); propagation from the admin API's 200 to a 401 on all ${revocation.propagationMs.sidecars} sidecars: p50 ${revocation.propagationMs.p50.toFixed(2)} ms, p99 ${revocation.propagationMs.p99.toFixed(2)} ms over ${revocation.propagationMs.samples} revocations.`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const child of children) child.kill();
  issuer.close();
}
