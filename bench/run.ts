import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './ports.js';
import { cpuSeconds } from './cpu.js';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBenchIssuer } from './jwks.js';
import { benchEgress } from './egress.js';
import { haproxyArgv, haproxyVersion } from './haproxy.js';
import { proofCosts } from './proof-cost.js';
import { tokenCosts } from './token-cost.js';
import { benchRevocation } from './revocation.js';
import { captureAvailable, withResidence, type Residence } from './residence.js';
import { moveToCore } from './store-affinity.js';

/**
 * `npm run bench`: the same JSON-RPC load against the demo agent directly, through a bare Node
 * hop, through a naive jose proxy, through HAProxy's jwt_verify when haproxy is installed, and
 * through the sidecar (every layer on; then with DPoP proofs too), in interleaved rounds. The proxy
 * under test is pinned to core 0 with taskset; the load generator and the agent share core 1 (the
 * agent at a raised priority where permitted), so figures are per proxy core. Prints a markdown
 * table for docs/performance.md. BENCH_DURATION (s per run, default 3), BENCH_ROUNDS (default 5) and
 * BENCH_CONNECTIONS (default 64). BENCH_BASELINE=DIR adds the embedded-store sidecar of another
 * built checkout (say, the last commit's) to the same rounds, for a before/after on one machine.
 * Ends with the machine's own stalls on the proxies' core (bench/hiccups.ts), to read the p99s by.
 */
const exec = promisify(execFile);
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const duration = Number(process.env.BENCH_DURATION ?? 3);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const halfRateRounds = Math.max(3, rounds);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
const pin = await exec('taskset', ['-c', '0', 'true']).then(() => true, () => false);
// `nice` runs the command even when it may not raise the priority: ask it what it got.
const raisePriority = (await exec('nice', ['-n', '-15', 'nice']).catch(() => ({ stdout: '' }))).stdout.trim() === '-15';
const children: ChildProcess[] = [];

interface LoadResult { rps: number; p50: number; p99: number; non2xx: number; errors: number; total: number; sent?: number; firstRecorded?: number }

async function probeStores(): Promise<Record<string, string>> {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const up = await exec('redis-cli', ['-u', redisUrl, 'ping']).then(() => true, () => false);
  return up ? { REDIS_URL: redisUrl, DATABASE_URL: databaseUrl } : {};
}

/**
 * Starts `argv` (pinned to `core` when taskset works; at a raised priority with `urgent`, when this
 * user may raise it) and waits until `ready` says so.
 */
async function start(argv: string[], core: number, ready: () => Promise<boolean>, options: { env?: Record<string, string>; urgent?: boolean } = {}): Promise<{ child: ChildProcess; readyMs: number }> {
  const pinned = pin ? ['taskset', '-c', String(core), ...argv] : argv;
  const [command, ...args] = options.urgent && raisePriority ? ['nice', '-n', '-15', ...pinned] : pinned;
  const started = performance.now();
  const child = spawn(command as string, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...options.env } });
  children.push(child);
  for (let i = 0; i < 3000; i++) {
    if (await ready().catch(() => false)) return { child, readyMs: performance.now() - started };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${argv.join(' ')} did not become ready`);
}

const listening = (port: number, path = '/') => async () => (await fetch(`http://127.0.0.1:${port}${path}`, { method: path === '/' ? 'POST' : 'GET' })).status > 0;

/**
 * One load run; with `pid`, also the CPU time that process spent per request during it: steadier
 * than a throughput ratio on a shared machine, and what the proxy costs by itself.
 */
async function measure(config: Record<string, unknown>, pid?: number): Promise<LoadResult & { cpuUsPerRequest?: number }> {
  const before = pid === undefined ? 0 : await cpuSeconds(pid);
  const result = await load(config);
  if (pid === undefined || result.total === 0) return result;
  return { ...result, cpuUsPerRequest: ((await cpuSeconds(pid)) - before) * 1e6 / (result.sent ?? result.total) };
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
// This machine's Redis and PostgreSQL stand in for servers of their own: off the proxy's core.
const localStores = [sharedStores.REDIS_URL, sharedStores.DATABASE_URL].every((url) => url === undefined || ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname));
const dataDir = mkdtempSync(join(tmpdir(), 'ca-a2a-bench-'));
const issuer = await startBenchIssuer();
// One token for the whole run, valid for a day: with the default hour, a run with BENCH_DURATION
// over about 30 s (some 100 × BENCH_DURATION seconds in all) outlived it, and every path refused.
const token = await issuer.sign({ exp: Math.floor(Date.now() / 1000) + 86_400 });
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });
const upstreamPort = await freePort();
const upstream = `http://127.0.0.1:${upstreamPort}`;

interface Path {
  name: string;
  url: string;
  token?: string;
  proofs?: boolean;
  pid?: number;
  /** Sidecars: how long each cold start took to be ready, the first being the one measured. */
  readyMs?: number[];
  /** Sidecars: one more cold start of the same variant, stopped once ready; resolves to its ready time. */
  restart?: () => Promise<number>;
}
type Measured = LoadResult & { cpuUsPerRequest?: number };

/** Starts a sidecar on core 0 with the bench policy `policy` and the stores `env` selects. */
async function startSidecar(policy: string, env: Record<string, string>, checkout: string): Promise<{ url: string; child: ChildProcess; readyMs: number }> {
  const port = await freePort();
  const admin = await freePort();
  const sidecar = await start(
    [process.execPath, join(checkout, 'bin/ca-a2a.js'), 'sidecar', '--policy', here(policy), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--upstream', upstream, '--issuer', issuer.issuer, '--no-watch'],
    0,
    async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200,
    { env: { CA_A2A_DATA_DIR: dataDir, CA_A2A_KEY_PREFIX: `bench-${process.pid}`, ...env } },
  );
  return { url: `http://127.0.0.1:${port}/message`, child: sidecar.child, readyMs: sidecar.readyMs };
}

/** A sidecar variant, started for the rounds; `restart` times further cold starts of it. */
async function sidecarPath(name: string, policy: string, env: Record<string, string>, checkout = here('..')): Promise<Path> {
  const { url, child, readyMs } = await startSidecar(policy, env, checkout);
  const restart = async (): Promise<number> => {
    const again = await startSidecar(policy, env, checkout);
    again.child.kill();
    await once(again.child, 'exit');
    return again.readyMs;
  };
  return { name, url, token, proofs: policy === 'policy-dpop.yaml', pid: child.pid, readyMs: [readyMs], restart };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

interface Added { name: string; p50: number; p99: number; residence?: { p50: number; p99: number; max: number; unpaired: number } }
interface HalfRate { rates: number[]; added: Added; directP99: number; throughP99: number; cpuUsPerRequest: number; busyPercent: number; others: Added[]; failed: { name: string; count: number }[] }

/** Requests of a run that were not answered 2xx: refusals and transport errors alike. */
const failedRequests = (result: LoadResult): number => result.non2xx + result.errors;
type AtRate = Measured & { residence?: Residence };

// Each proxy's own share of the latency, read off the wire (bench/residence.ts), where tcpdump may capture.
const capture = await captureAvailable();

/** One run at a fixed `rate` through `target` (tagged requests), with its residence when captured. */
async function atRate(target: Path, rate: number): Promise<AtRate> {
  const run = (): Promise<Measured> => measure({ url: target.url, body, token: target.token, rate, tag: true }, target.pid);
  if (!capture || target.pid === undefined) return run();
  const options = { dir: dataDir, proxyPort: Number(new URL(target.url).port), upstreamPort, core: 1, firstCounted: (result: Measured) => result.firstRecorded ?? 0 };
  const { result, residence } = await withResidence(options, run);
  return { ...result, residence };
}

/**
 * Added latency at half the maximum rate, in rounds. This VM's speed drifts by 2-3× within
 * minutes, so a rate taken from a maximum measured earlier can overload the sidecar when the
 * machine has slowed down (a backlog then drains through the recorded window): each round
 * measures the maximum of `path` again, then direct, through `path` and through each of `others`
 * (the bare Node hop, HAProxy) at half of it, back to back, `path` first or last in turn.
 */
async function halfRate(path: Path, others: Path[]): Promise<HalfRate> {
  const runs: { rate: number; max: LoadResult; direct: LoadResult; through: AtRate; others: AtRate[] }[] = [];
  for (let round = 0; round < halfRateRounds; round++) {
    const max = await load({ url: path.url, body, token, duration });
    const rate = Math.max(100, Math.floor(max.rps / 2));
    const direct = await atRate({ name: 'direct', url: `${upstream}/message`, token }, rate);
    // Right after its maximum-rate run the sidecar's heap is full of garbage, so a full collection
    // is likelier in the next window: it goes first in even rounds and last in odd ones.
    const first = round % 2 === 0 ? await atRate(path, rate) : undefined;
    const results: AtRate[] = [];
    for (const other of others) results.push(await atRate(other, rate));
    runs.push({ rate, max, direct, through: first ?? (await atRate(path, rate)), others: results });
  }
  const added = (name: string, result: (run: (typeof runs)[number]) => AtRate): Added => {
    const residences = runs.flatMap((run) => result(run).residence ?? []);
    return {
      name,
      p50: median(runs.map((run) => result(run).p50 - run.direct.p50)),
      p99: median(runs.map((run) => result(run).p99 - run.direct.p99)),
      ...(residences.length === runs.length ? {
        residence: {
          p50: median(residences.map((residence) => residence.p50)),
          p99: median(residences.map((residence) => residence.p99)),
          max: Math.max(...residences.map((residence) => residence.max)),
          // Requests of the measured window whose four packets were not all captured.
          unpaired: runs.reduce((sum, run) => sum + result(run).total, 0) - residences.reduce((sum, residence) => sum + residence.samples, 0),
        },
      } : {}),
    };
  };
  return {
    rates: runs.map((run) => run.rate),
    added: added(path.name, (run) => run.through),
    directP99: median(runs.map((run) => run.direct.p99)),
    throughP99: median(runs.map((run) => run.through.p99)),
    cpuUsPerRequest: median(runs.map((run) => run.through.cpuUsPerRequest ?? Number.NaN)),
    busyPercent: median(runs.map((run) => ((run.through.cpuUsPerRequest ?? Number.NaN) * run.rate) / 1e4)),
    others: others.map((other, index) => added(other.name, (run) => run.others[index] as LoadResult)),
    // A refusal is answered fast and an error is not timed at all: every figure above is only
    // worth reading with these at zero.
    failed: [
      { name: 'direct', count: runs.reduce((sum, run) => sum + failedRequests(run.direct), 0) },
      { name: path.name, count: runs.reduce((sum, run) => sum + failedRequests(run.max) + failedRequests(run.through), 0) },
      ...others.map((other, index) => ({ name: other.name, count: runs.reduce((sum, run) => sum + failedRequests(run.others[index] as LoadResult), 0) })),
    ],
  };
}

interface Stalls { rate: number; seconds: number; over1: number; over3: number; longestMs: number; lostMs: number }

/**
 * The machine's own stalls, to read the p99s by: bench/hiccups.ts (a clock loop) on the proxies'
 * core while the agent takes `rate` req/s straight from the generator on the other core.
 */
async function machineStalls(rate: number): Promise<Stalls> {
  const args = ['--import', 'tsx', here('hiccups.ts'), String(duration)];
  const meter = exec(pin ? 'taskset' : process.execPath, pin ? ['-c', '0', process.execPath, ...args] : args);
  await load({ url: `${upstream}/message`, body, token, rate });
  return { rate, ...(JSON.parse((await meter).stdout) as Omit<Stalls, 'rate'>) };
}

function describeStalls(stalls: Stalls): string {
  return `- The machine itself: a clock loop alone on core 0, while the agent takes ${stalls.rate} req/s on core 1, lost the core ${stalls.over1} times for more than 1 ms in ${stalls.seconds} s (${stalls.over3} times for more than 3 ms; longest ${stalls.longestMs.toFixed(1)} ms, ${stalls.lostMs.toFixed(0)} ms in all). Any process on core 0 stalls as often, whatever it runs.`;
}

function describeReady(times: number[]): string {
  return `${median(times).toFixed(0)} (${Math.min(...times).toFixed(0)}–${Math.max(...times).toFixed(0)})`;
}

function describeHalfRate(result: HalfRate): string {
  const signed = (ms: number): string => `${ms >= 0 ? '+' : ''}${ms.toFixed(2)}`;
  const inside = ({ residence }: Added): string => (residence ? `; in the proxy itself p50 ${residence.p50.toFixed(2)} ms, p99 ${residence.p99.toFixed(2)} ms (longest ${residence.max.toFixed(1)} ms${residence.unpaired ? `, ${residence.unpaired} requests unpaired` : ''})` : '');
  const others = result.others.map((other) => `${other.name} p50 ${signed(other.p50)} ms, p99 ${signed(other.p99)} ms${inside(other)}`).join('. ');
  const failed = result.failed.filter((path) => path.count > 0);
  const answered = failed.length === 0 ? ' Every request of these runs answered 2xx.' : ` NOT ALL ANSWERED 2xx (non-2xx or errors): ${failed.map((path) => `${path.name} ${path.count}`).join(', ')}.`;
  return `- ${result.added.name}, at ${result.rates.join(' / ')} req/s: end to end p50 ${signed(result.added.p50)} ms, p99 ${signed(result.added.p99)} ms (direct p99 ${result.directP99} ms, through it ${result.throughP99} ms)${inside(result.added)}; it spent ${result.cpuUsPerRequest.toFixed(0)} µs of CPU per request, its core ${Math.round(result.busyPercent)} % busy.${others ? ` At the same rates: ${others}.` : ''}${answered}`;
}

const storesMoved = pin && sharedStores.REDIS_URL && localStores ? await moveToCore(['redis-server', 'postgres'], 1) : undefined;
try {
  // The agent shares core 1 with the load generator. At a raised priority it answers as soon as a
  // request reaches it, instead of waiting out the generator's time slice: without that, the
  // proxied paths' p99 measured the scheduling of core 1 (the direct path never waits, since there
  // the generator itself hands the core to the agent when it waits for the answer).
  await start([process.execPath, '--import', 'tsx', here('upstream.ts'), String(upstreamPort)], 1, listening(upstreamPort), { urgent: true });
  // Every proxy starts first (all pinned to core 0, idle but for the one under load) and gets a
  // 2 s unmeasured warm-up (JIT, lazily compiled modules), then the paths are measured in rounds,
  // the order reversed every other round: this VM's speed drifts 2-3× within minutes, and one
  // back-to-back run per path would put that drift into the ratios. Each column is the median over the rounds; each ratio is the median of
  // the ratios within a round (paths measured minutes apart are never divided by each other).
  const barePort = await freePort();
  const bare = await start([process.execPath, '--import', 'tsx', here('bare-proxy.ts'), String(barePort), upstream], 0, listening(barePort));
  const naivePort = await freePort();
  const naive = await start([process.execPath, '--import', 'tsx', here('naive-proxy.ts'), String(naivePort), upstream, issuer.issuer], 0, listening(naivePort));
  const barePath: Path = { name: 'bare Node hop (node:http + undici)', url: `http://127.0.0.1:${barePort}/message`, token, pid: bare.child.pid };
  const paths: Path[] = [
    { name: 'direct to the agent', url: `${upstream}/message`, token },
    barePath,
    { name: 'naive proxy (jose jwtVerify per request)', url: `http://127.0.0.1:${naivePort}/message`, token, pid: naive.child.pid },
  ];
  const haproxy = await haproxyVersion();
  const references = [barePath];
  let haproxyPath: Path | undefined;
  if (haproxy) {
    const port = await freePort();
    const argv = haproxyArgv({ dir: dataDir, port, upstream: new URL(upstream), issuer: issuer.issuer, publicKeyPem: issuer.publicKeyPem });
    const { child } = await start(argv, 0, listening(port));
    haproxyPath = { name: `HAProxy ${haproxy} jwt_verify per request (one thread)`, url: `http://127.0.0.1:${port}/message`, token, pid: child.pid };
    paths.push(haproxyPath);
    references.push(haproxyPath);
  }
  const variants = [
    ['sidecar, every layer (embedded stores)', 'policy.yaml', {}],
    ['sidecar, every layer (Redis + PostgreSQL stores)', 'policy.yaml', sharedStores],
    ['sidecar, every layer + DPoP proof + digest (Redis + PostgreSQL)', 'policy-dpop.yaml', sharedStores],
  ] as const;
  for (const [name, policy, env] of variants) {
    if (env === sharedStores && !sharedStores.REDIS_URL) continue;
    paths.push(await sidecarPath(name, policy, env));
  }
  const baseline = process.env.BENCH_BASELINE;
  if (baseline) {
    const baselinePath = await sidecarPath(`baseline: sidecar, every layer (embedded stores), ${baseline}`, 'policy.yaml', {}, baseline);
    paths.push(baselinePath);
    references.push(baselinePath);
  }

  const config = (path: Path): Record<string, unknown> => ({ url: path.url, body, token: path.token, proofs: path.proofs ? 6_000 * duration : undefined });
  for (const path of paths) await load({ ...config(path), duration: 2, ...(path.proofs ? { proofs: 12_000 } : {}) });
  const results = new Map<Path, Measured[]>(paths.map((path) => [path, []]));
  for (let round = 0; round < rounds; round++) {
    for (const path of round % 2 === 0 ? paths : [...paths].reverse()) results.get(path)?.push(await measure(config(path), path.pid));
  }
  // Ready time: two more cold starts of each sidecar, now that no load runs. On this VM one start
  // is one sample of its drift (the same start measured 550 ms alone and 1 050 ms in a slow phase).
  for (const path of paths) {
    for (let i = 0; path.restart && i < 2; i++) path.readyMs?.push(await path.restart());
  }
  const rows = await Promise.all(paths.map(async (path) => {
    const runs = results.get(path) ?? [];
    const cpu = runs.flatMap((run) => (run.cpuUsPerRequest === undefined ? [] : [run.cpuUsPerRequest]));
    const result: Measured = {
      rps: median(runs.map((run) => run.rps)),
      p50: median(runs.map((run) => run.p50)),
      p99: median(runs.map((run) => run.p99)),
      non2xx: runs.reduce((sum, run) => sum + run.non2xx, 0),
      errors: runs.reduce((sum, run) => sum + run.errors, 0),
      total: runs.reduce((sum, run) => sum + run.total, 0),
      ...(cpu.length ? { cpuUsPerRequest: median(cpu) } : {}),
    };
    return { name: path.name, result, runs, spread: runs.map((run) => Math.round(run.rps)), rssMb: path.pid === undefined ? undefined : await rss(path.pid), readyMs: path.readyMs };
  }));
  naive.child.kill();

  // Added latency at half each sidecar's maximum rate (the DPoP variant aside: its load needs proofs).
  const halfRates: string[] = [];
  const sidecarRates: number[] = [];
  for (const path of paths.filter((candidate) => candidate.name.startsWith('sidecar, every layer ('))) {
    const result = await halfRate(path, references);
    sidecarRates.push(...result.rates);
    halfRates.push(describeHalfRate(result));
  }
  // And HAProxy at half its own maximum: the reference of the target.
  if (haproxyPath) halfRates.push(describeHalfRate(await halfRate(haproxyPath, [])));
  halfRates.push(describeStalls(await machineStalls(median(sidecarRates))));

  const ratio = (runs: Measured[], reference: Measured[] | undefined): string =>
    median(runs.map((run, round) => run.rps / (reference?.[round]?.rps ?? Number.NaN))).toFixed(2);
  const [direct, bareRuns, naiveRuns] = [rows[0]?.runs, rows[1]?.runs, rows[2]?.runs];
  const lines = [
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; proxy pinned to core 0: ${pin ? 'yes' : 'no (taskset unavailable)'}; local stores moved to core 1: ${storesMoved?.names.length ? storesMoved.names.join(', ') : 'no'}; agent at a raised priority on core 1: ${raisePriority ? 'yes' : 'no (not permitted)'}; ${connections} connections; ${rounds} rounds of ${duration} s per path, medians; ${new Date().toISOString().slice(0, 10)}`,
    '',
    '| path | req/s | p50 ms | p99 ms | vs direct | vs bare hop | vs naive | proxy CPU µs/req | non-2xx / errors | RSS MB | ready ms (median of 3 starts, range) | req/s per round |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(({ name, result, runs, rssMb, readyMs, spread }) => `| ${name} | ${Math.round(result.rps)} | ${result.p50} | ${result.p99} | ${ratio(runs, direct)} | ${ratio(runs, bareRuns)} | ${ratio(runs, naiveRuns)} | ${result.cpuUsPerRequest?.toFixed(0) ?? '-'} | ${result.non2xx} / ${result.errors} | ${rssMb?.toFixed(0) ?? '-'} | ${readyMs ? describeReady(readyMs) : '-'} | ${spread.join(' / ')} |`),
    '',
    `Added latency at half the sidecar's maximum rate (open loop on ${connections} connections, so a request never waits for a free connection in the generator; latency from each request's due time; in each of ${halfRateRounds} rounds the maximum is measured again right before, then direct, through the sidecar and through each reference at half of it; medians). End to end is the p99 through the proxy less the p99 straight to the agent, two runs apart; in the proxy itself is each request's time in the proxy read off the wire (tcpdump on loopback: from the request's first byte in to the answer's last byte out, less the agent's part)${capture ? '' : ' — not measured here: tcpdump cannot capture on lo'}:`,
    '',
    ...halfRates,
  ];
  lines.push('', await proofCosts());
  lines.push('', await tokenCosts());
  lines.push('', await benchEgress(Math.min(duration, 5)));
  if (sharedStores.REDIS_URL) {
    const revocation = await benchRevocation({ redisUrl: sharedStores.REDIS_URL, databaseUrl: sharedStores.DATABASE_URL });
    lines.push('', `Revocation: in-process check ${revocation.checkNsPerCall.toFixed(0)} ns per request (${revocation.setSize} revocations loaded); propagation from the admin API's 200 to a 401 on all ${revocation.propagationMs.sidecars} sidecars: p50 ${revocation.propagationMs.p50.toFixed(2)} ms, p99 ${revocation.propagationMs.p99.toFixed(2)} ms over ${revocation.propagationMs.samples} revocations.`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const child of children) child.kill();
  issuer.close();
  await storesMoved?.restore();
}
