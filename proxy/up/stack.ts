import { join, resolve } from 'node:path';
import { pino, type DestinationStream } from 'pino';
import { startAgent, type AgentName, type RunningAgent } from '../../agents/registry.js';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { startIssuer } from '../../deploy/dev-issuer/issuer.js';
import { gatewayOptionsFromEnv } from '../../mcp/cli.js';
import { startMcpGateway } from '../../mcp/gateway.js';
import { startAdminApi } from '../admin-api/start.js';
import { shippedPolicyFile, type ShippedService } from '../services.js';
import { startSidecar, type Sidecar, type SidecarOptions } from '../sidecar.js';
import type { StackPorts } from './ports.js';

/** Options of {@link startStack}. */
export interface StackOptions {
  /** Client secrets, signing key, PGlite, local bucket (default ./.ca-a2a). */
  readonly dataDir: string;
  readonly ports: StackPorts;
  /** REDIS_URL, DATABASE_URL, CA_A2A_S3_* select shared backends; unset → embedded. */
  readonly env: NodeJS.ProcessEnv;
  /** Where every component's JSON logs go (the terminal shows progress and the summary only). */
  readonly logDestination: DestinationStream;
  readonly progress: (line: string) => void;
  /** Orchestrator tuning (tests shorten the stale window). */
  readonly orchestrator?: { readonly staleAfterSeconds?: number; readonly sweepIntervalMs?: number };
}

/** The running system. */
export interface Stack {
  readonly issuer: string;
  readonly dataDir: string;
  /** Each service's sidecar URL: what clients call. */
  readonly sidecars: Readonly<Partial<Record<ShippedService, string>>>;
  readonly agents: ReadonlyMap<AgentName, RunningAgent>;
  /** Whether every agent's sidecar has an egress listener (agent → gateway / agent calls work). */
  readonly egress: boolean;
  /** Stops everything, newest first. */
  close(): Promise<void>;
}

// Targets before callers: each agent's sidecar is told where the services it calls listen.
const START_ORDER: readonly AgentName[] = ['archivist', 'validator', 'extractor', 'orchestrator'];
const host = '127.0.0.1';

/**
 * The sidecar egress listener: the agent posts plain JSON-RPC there and the sidecar adds the
 * token, proof and digest. Options and field named as the lead's egress work defines them.
 */
function egressUrlOf(sidecar: Sidecar): string | undefined {
  const url: unknown = (sidecar as unknown as Record<string, unknown>)['egressUrl'];
  return typeof url === 'string' ? url : undefined;
}

/** Resolves once the sidecar's admin /ready answers 200 (policy loaded, revocations loaded). */
async function waitReady(adminUrl: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await fetch(`${adminUrl}/ready`).then((res) => res.ok, () => false);
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`sidecar at ${adminUrl} not ready after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts issuer, gateway, agents, admin API and every sidecar, reporting one line per step. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const dataDir = resolve(opts.dataDir);
  const { env, ports, progress } = opts;
  const closers: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const closer of closers.reverse()) await closer().catch(() => undefined);
    closers.length = 0;
  };
  const logger = (service: string) => pino({ base: { service } }, opts.logDestination);
  const stores = { redisUrl: env['REDIS_URL'] || undefined, databaseUrl: env['DATABASE_URL'] || undefined, dataDir };
  const sidecars: Partial<Record<ShippedService, string>> = {};
  const agents = new Map<AgentName, RunningAgent>();
  let egressEverywhere = true;

  try {
    const issuer = await startIssuer({ host, port: ports.issuer, dataDir });
    closers.push(() => issuer.close());
    progress(`issuer          ${issuer.issuer}`);
    const secrets = await loadClientSecrets(dataDir);

    const sidecar = async (name: ShippedService, upstream: string, extra: Record<string, unknown> = {}): Promise<Sidecar> => {
      const p = ports.service(name);
      const options: SidecarOptions = {
        policyFile: shippedPolicyFile(name),
        listen: `${host}:${p.sidecar}`,
        adminListen: `${host}:${p.admin}`,
        upstream,
        issuer: issuer.issuer,
        watchPolicy: true,
        logDestination: opts.logDestination,
        stores,
        ...extra,
      };
      const started = await startSidecar(options);
      closers.push(() => started.close());
      await waitReady(started.adminUrl);
      sidecars[name] = started.url;
      return started;
    };

    const gateway = await startMcpGateway({ ...gatewayOptionsFromEnv(env), host, port: ports.service('mcp').upstream, dataDir, logger: logger('mcp-gateway') });
    closers.push(() => gateway.close());
    const mcp = await sidecar('mcp', gateway.url);
    progress(`mcp gateway     ${mcp.url} → ${gateway.url} (${env['DATABASE_URL'] ? 'PostgreSQL' : 'PGlite'}, ${env['CA_A2A_S3_BUCKET'] ? 'S3' : 'local bucket'})`);

    for (const name of START_ORDER) {
      // The agent starts first (the sidecar needs its URL) and learns its egress URL after.
      const egress: { url?: string | undefined } = {};
      const agent = await startAgent(name, {
        host, port: ports.service(name).upstream, logger: logger(name),
        egressUrl: () => egress.url ?? 'http://127.0.0.1:9/no-egress',
        ...(name === 'orchestrator' ? { orchestrator: opts.orchestrator ?? {} } : {}),
        issuer: issuer.issuer,
      });
      closers.push(() => agent.close());
      agents.set(name, agent);
      const serviceUrls = Object.fromEntries(Object.entries(sidecars));
      const secret = secrets[name];
      const front = await sidecar(name, agent.url, {
        egressListen: `${host}:0`, clientId: name, clientSecret: secret, serviceUrls,
      });
      egress.url = egressUrlOf(front);
      if (egress.url === undefined) egressEverywhere = false;
      progress(`${name.padEnd(15)} ${front.url} → ${agent.url}${egress.url === undefined ? '  (no egress listener: its calls cannot leave)' : ''}`);
    }

    const admin = await startAdminApi({ listen: `${host}:${ports.service('admin').upstream}`, stores, logDestination: opts.logDestination });
    closers.push(() => admin.close());
    const adminSidecar = await sidecar('admin', admin.url);
    progress(`admin api       ${adminSidecar.url} → ${admin.url}`);
    return { issuer: issuer.issuer, dataDir, sidecars, agents, egress: egressEverywhere, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** The component log file inside the data directory. */
export function logFileFor(dataDir: string): string {
  return join(resolve(dataDir), 'logs', 'ca-a2a.log');
}
