import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cpuSeconds } from './cpu.js';
import { startBenchIssuer } from './jwks.js';
import { freePort } from './ports.js';

/**
 * `npm run bench:ab -- DIR…`: the embedded-store sidecar of each built checkout (`node bin/build.js`
 * in each) under the same maximum-rate load, in many short interleaved rounds, the order reversed
 * every other round, reporting the proxy's CPU time per request and, for each checkout after the
 * first, the median of its per-round ratio to the first. A before/after of one change in a few
 * minutes: this VM's speed drifts within minutes, and only measurements taken seconds apart can be
 * divided by each other. BENCH_ROUNDS (default 15) and BENCH_DURATION (s per run, default 2).
 * Needs taskset: the sidecars share core 0, the agent and the load generator core 1.
 */
const exec = promisify(execFile);
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const checkouts = process.argv.slice(2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
const duration = Number(process.env.BENCH_DURATION ?? 2);
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });

interface Variant { checkout: string; url: string; pid: number; cpuUs: number[]; rps: number[] }

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

async function until(ready: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (await ready().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${what} did not become ready`);
}

if (checkouts.length === 0) {
  process.stderr.write('usage: npm run bench:ab -- DIR [DIR…] (each a checkout built with node bin/build.js)\n');
  process.exit(2);
}
const children: ChildProcess[] = [];
const issuer = await startBenchIssuer();
try {
  const token = await issuer.sign({ exp: Math.floor(Date.now() / 1000) + 86_400 });
  const dataDir = mkdtempSync(join(tmpdir(), 'ca-a2a-ab-'));
  const upstreamPort = await freePort();
  const upstream = `http://127.0.0.1:${upstreamPort}`;
  children.push(spawn('taskset', ['-c', '1', process.execPath, '--import', 'tsx', here('upstream.ts'), String(upstreamPort)], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await until(async () => (await fetch(upstream, { method: 'POST' })).status > 0, 'the demo agent');
  const variants: Variant[] = [];
  for (const checkout of checkouts) {
    const port = await freePort();
    const admin = await freePort();
    const argv = [process.execPath, join(checkout, 'bin/ca-a2a.js'), 'sidecar', '--policy', here('policy.yaml'), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--upstream', upstream, '--issuer', issuer.issuer, '--no-watch'];
    const child = spawn('taskset', ['-c', '0', ...argv], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, CA_A2A_DATA_DIR: dataDir } });
    children.push(child);
    await until(async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200, checkout);
    variants.push({ checkout, url: `http://127.0.0.1:${port}/message`, pid: child.pid as number, cpuUs: [], rps: [] });
  }
  const run = async (variant: Variant, seconds: number): Promise<{ cpuUs: number; rps: number }> => {
    const before = await cpuSeconds(variant.pid);
    const config = JSON.stringify({ url: variant.url, body, token, connections: 64, duration: seconds });
    const { stdout } = await exec('taskset', ['-c', '1', process.execPath, '--import', 'tsx', here('load.ts'), config], { maxBuffer: 1 << 20 });
    const result = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { rps: number; total: number; non2xx: number; errors: number };
    if (result.non2xx + result.errors > 0) throw new Error(`${variant.checkout}: ${result.non2xx} non-2xx, ${result.errors} errors`);
    return { cpuUs: ((await cpuSeconds(variant.pid)) - before) * 1e6 / result.total, rps: result.rps };
  };
  // Unmeasured warm-up: JIT and lazily compiled modules.
  for (const variant of variants) await run(variant, 2);
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const { cpuUs, rps } = await run(variant, duration);
      variant.cpuUs.push(cpuUs);
      variant.rps.push(rps);
    }
  }
  const [first] = variants as [Variant];
  const lines = variants.map((variant) => {
    const ratios = variant.cpuUs.map((cpuUs, i) => cpuUs / (first.cpuUs[i] as number));
    const ratio = variant === first ? '' : `; CPU per request against ${first.checkout}, per round: median ${median(ratios).toFixed(3)} [${ratios.map((r) => r.toFixed(2)).join(' ')}]`;
    return `${variant.checkout}: ${median(variant.cpuUs).toFixed(1)} µs CPU per request, ${Math.round(median(variant.rps))} req/s (medians of ${rounds} rounds)${ratio}`;
  });
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const child of children) child.kill();
  issuer.close();
}
