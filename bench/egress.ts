import { execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadClientSecrets } from '../deploy/dev-issuer/clients.js';
import { startIssuer } from '../deploy/dev-issuer/issuer.js';
import { shippedPolicyFile } from '../proxy/services.js';
import { startSidecar, type Sidecar } from '../proxy/sidecar.js';
import { freePort } from './ports.js';

/**
 * Agent → its sidecar's egress → the target's sidecar (inbound, DPoP required) → the target
 * agent, against the same call made directly to the target agent. Both sidecars and the
 * development issuer run in this process (sharing one event loop), the target agent and the load
 * generator in their own. Memory stores; the target runs the shipped extractor policy with its
 * rate-limit budget raised (bench/policy-egress-target.yaml) so the limiter never refuses.
 */
const exec = promisify(execFile);
const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

export async function benchEgress(duration = 5): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ca-a2a-bench-egress-'));
  const issuer = await startIssuer({ port: 0, dataDir });
  const secrets = await loadClientSecrets(dataDir);
  const port = await freePort();
  const agent = spawn(process.execPath, ['--import', 'tsx', here('upstream.ts'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'extract_document', params: { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' } });
  const load = async (url: string) => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', here('load.ts'), JSON.stringify({ url, body, connections: 16, duration })], { maxBuffer: 1 << 20 });
    return JSON.parse(stdout.trim().split('\n').at(-1) as string) as { rps: number; p50: number; p99: number; non2xx: number };
  };
  // Everything started is stopped however the run ends: a sidecar that fails to start left the
  // agent running, orphaned, holding the bench's stderr open.
  let target: Sidecar | undefined;
  let caller: Sidecar | undefined;
  try {
    await new Promise((resolve, reject) => {
      agent.stdout?.once('data', resolve);
      agent.once('exit', (code) => reject(new Error(`the egress bench's agent exited (${code}) before it was ready`)));
    });
    const silent = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    target = await startSidecar({ policyFile: here('policy-egress-target.yaml'), upstream: `http://127.0.0.1:${port}`, issuer: issuer.issuer, watchPolicy: false, logDestination: silent });
    caller = await startSidecar({
      policyFile: shippedPolicyFile('orchestrator'), upstream: 'http://127.0.0.1:1', issuer: issuer.issuer, watchPolicy: false, logDestination: silent,
      egressListen: '127.0.0.1:0', clientSecret: secrets.orchestrator, serviceUrls: { extractor: target.url },
    });
    await load(`${caller.egressUrl}/extractor/message`); // warm-up: token, keys, JIT
    const direct = await load(`http://127.0.0.1:${port}/message`);
    const meshed = await load(`${caller.egressUrl}/extractor/message`);
    return [
      `Agent → egress → inbound → agent (both sidecars and the issuer in one process, 16 connections, ${duration} s, memory stores):`,
      '',
      '| path | req/s | p50 ms | p99 ms | non-2xx |',
      '|---|---:|---:|---:|---:|',
      `| direct to the target agent | ${Math.round(direct.rps)} | ${direct.p50} | ${direct.p99} | ${direct.non2xx} |`,
      `| through egress (token, proof, digest) and the target's inbound pipeline (DPoP required) | ${Math.round(meshed.rps)} | ${meshed.p50} | ${meshed.p99} | ${meshed.non2xx} |`,
    ].join('\n');
  } finally {
    await caller?.close();
    await target?.close();
    agent.kill();
    await issuer.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${await benchEgress(Number(process.env.BENCH_DURATION ?? 5))}\n`);
