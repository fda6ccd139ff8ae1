import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { EPHEMERAL_PORTS } from '../../proxy/up/ports.js';
import { createRpcClient, type RpcClient } from '../../proxy/up/rpc-client.js';
import { up, type UpResult } from '../../proxy/up/up.js';

/** `up` on ephemeral ports in a data directory of its own, with logs discarded unless `logs` keeps them. */
export async function startUp(dataDir: string, progress: string[] = [], env: NodeJS.ProcessEnv = {}, logs?: Writable): Promise<UpResult> {
  return up({
    dataDir,
    ports: EPHEMERAL_PORTS,
    // Embedded stores unless the test says otherwise: the run's own environment must not leak in.
    env,
    logDestination: logs ?? new Writable({ write: (_chunk, _enc, done) => done() }),
    progress: (line) => progress.push(line),
    orchestrator: { sweepIntervalMs: 0 },
  });
}

export async function tempDataDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ca-a2a-up-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A client of the stack's issuer for one of the dev clients. */
export async function clientFor(result: UpResult, clientId: string): Promise<RpcClient> {
  const secrets = await loadClientSecrets(result.stack.dataDir);
  return createRpcClient({ issuer: result.stack.issuer, clientId, clientSecret: secrets[clientId] ?? '' });
}
