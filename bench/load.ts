import autocannon from 'autocannon';
import { Pool } from 'undici';
import { signedHeaders } from '../proxy/client/signed-headers.js';
import { createProofKey } from '../proxy/integrity/proof.js';

/**
 * The load generator, in its own process (and on its own core): autocannon with keep-alive for
 * the maximum rate; an open loop at a fixed `rate`. With `proofs`, every request carries its own
 * pre-signed DPoP proof, as real clients do.
 */
interface LoadConfig {
  url: string;
  body: string;
  token?: string;
  connections: number;
  duration: number;
  rate?: number;
  proofs?: number;
  /** At a fixed rate: `?n=I` on the I-th request's path, for bench/residence.ts to pair its legs. */
  tag?: boolean;
}

const config = JSON.parse(process.argv[2] as string) as LoadConfig;
const headers: Record<string, string> = { 'content-type': 'application/json' };
if (config.token) headers.authorization = `Bearer ${config.token}`;

let requests: autocannon.Request[] | undefined;
if (config.proofs && config.token) {
  const key = await createProofKey();
  const signed: Record<string, string>[] = [];
  for (let i = 0; i < config.proofs; i++) {
    signed.push(await signedHeaders({ key, accessToken: config.token, tokenType: 'Bearer', method: 'POST', url: config.url, body: config.body }));
  }
  let next = 0;
  requests = [{ setupRequest: (request) => ({ ...request, headers: { ...request.headers, ...signed[next++ % signed.length] } }) }];
}

/**
 * At a fixed rate: an open loop on undici (autocannon reports whole milliseconds, too coarse for a
 * sub-millisecond budget). Each request is due at start + i / rate; its latency runs from when it
 * was due, not when it was sent, so a stall is charged to every request it delayed
 * (no coordinated omission). The first two seconds are sent but not recorded: this process, its
 * connections and its JIT are new.
 */
async function atRate(rate: number): Promise<Record<string, number>> {
  const url = new URL(config.url);
  const pool = new Pool(url.origin, { connections: config.connections, pipelining: 1 });
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const WARMUP_S = 2;
  const started = performance.now();
  const warm = started + WARMUP_S * 1000;
  const total = Math.floor(rate * (config.duration + WARMUP_S));
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  const send = (index: number): void => {
    const due = started + (index * 1000) / rate;
    const path = config.tag ? `${url.pathname}?n=${index}` : url.pathname;
    const p = pool.request({ path, method: 'POST', headers, body: config.body })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode < 200 || res.statusCode > 299) non2xx++;
        if (due >= warm) latencies.push(performance.now() - due);
      }, () => {
        errors++;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  while (sent < total) {
    const now = performance.now();
    while (sent < total && started + (sent * 1000) / rate <= now) send(sent++);
    // A 1 ms timer, not a spin: the generator shares its core with the agent.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  const at = (p: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN) * 100) / 100;
  // `sent` counts the warm-up too: the proxy's CPU time covers every request this process sent.
  // The first request due after the warm-up: the first that bench/residence.ts counts.
  const firstRecorded = Math.ceil(WARMUP_S * rate);
  return { rps: latencies.length / ((performance.now() - warm) / 1000), p50: at(0.5), p99: at(0.99), non2xx, errors, total: latencies.length, sent, firstRecorded };
}

if (config.rate) {
  process.stdout.write(`${JSON.stringify(await atRate(config.rate))}\n`);
} else {
  const result = await autocannon({
    url: config.url,
    method: 'POST',
    headers,
    body: config.body,
    connections: config.connections,
    duration: config.duration,
    ...(requests ? { requests } : {}),
  });
  process.stdout.write(`${JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    total: result.requests.total,
  })}\n`);
}
