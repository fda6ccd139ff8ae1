import { join, resolve } from 'node:path';
import type { DestinationStream } from 'pino';
import { startAgent, type AgentName, type RunningAgent } from '../../agents/registry.js';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { startIssuer } from '../../deploy/dev-issuer/issuer.js';
import { gatewayOptionsFromEnv } from '../../mcp/cli.js';
import { startMcpGateway } from '../../mcp/gateway.js';
import { startAdminApi } from '../admin-api/start.js';
import { createLogger } from '../observe/logger.js';
import { shippedPolicyFile, type ShippedService } from '../services.js';
import { startSidecar, type Sidecar, type SidecarOptions } from '../sidecar.js';
import type { StackPorts } from './ports.js';

/** Options of {@link startStack}. */
export interface StackOptions {
  /** Client secrets, signing key, PGlite, revocation journal, local bucket (default ./.ca-a2a). */
  readonly dataDir: string;
  readonly ports: StackPorts;
  /** REDIS_URL, DATABASE_URL, CA_A2A_S3_* select shared backends; unset → embedded. CA_A2A_KEY_PREFIX names the Redis keys, as for one sidecar. */
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
  /** Stops one agent (its sidecar keeps serving and answers 502 meanwhile). */
  stopAgent(name: AgentName): Promise<void>;
  /** (Re)starts one agent on its port, behind the same sidecar. */
  startAgent(name: AgentName): Promise<void>;
  /** Stops everything, newest first. */
  close(): Promise<void>;
}

// Targets before callers: each agent's sidecar is told where the services it calls listen.
const START_ORDER: readonly AgentName[] = ['archivist', 'validator', 'extractor', 'orchestrator'];
const host = '127.0.0.1';

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
  const logger = (service: string) => createLogger({ service, destination: opts.logDestination });
  const stores = { redisUrl: env['REDIS_URL'] || undefined, databaseUrl: env['DATABASE_URL'] || undefined, dataDir, keyPrefix: env['CA_A2A_KEY_PREFIX'] || undefined };
  const sidecars: Partial<Record<ShippedService, string>> = {};
  const agents = new Map<AgentName, RunningAgent>();
  const fronts = new Map<AgentName, { port: number; state: { egress?: string | undefined; url?: string | undefined } }>();
  let restart: (name: AgentName) => Promise<void> = async () => undefined;
  let stop: (name: AgentName) => Promise<void> = async () => undefined;

  try {
    const issuer = await startIssuer({ host, port: ports.issuer, dataDir });
    closers.push(() => issuer.close());
    progress(`issuer          ${issuer.issuer}`);
    const secrets = await loadClientSecrets(dataDir);

    const sidecar = async (name: ShippedService, upstream: string, extra: Partial<SidecarOptions> = {}): Promise<Sidecar> => {
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

    const launch = async (name: AgentName, port: number, front: { egress?: string | undefined; url?: string | undefined }): Promise<RunningAgent> => {
      const agent = await startAgent(name, {
        host, port, logger: logger(name), issuer: issuer.issuer,
        // The agent starts before its sidecar (which needs the agent's URL), so both are read late.
        egressUrl: () => front.egress ?? 'http://127.0.0.1:9/no-egress',
        publicUrl: () => (front.url === undefined ? undefined : `${front.url}/message`),
        ...(name === 'orchestrator' ? { orchestrator: opts.orchestrator ?? {} } : {}),
      });
      agents.set(name, agent);
      return agent;
    };
    for (const name of START_ORDER) {
      const front: { egress?: string | undefined; url?: string | undefined } = {};
      const agent = await launch(name, ports.service(name).upstream, front);
      closers.push(() => agents.get(name)?.close() ?? Promise.resolve());
      fronts.set(name, { port: agent.port, state: front });
      const serviceUrls = Object.fromEntries(Object.entries(sidecars));
      const sidecarOf = await sidecar(name, agent.url, {
        // Each agent's own client secret: in one process the CA_A2A_CLIENT_SECRET variable cannot serve four.
        egressListen: `${host}:0`, clientSecret: secrets[name], serviceUrls,
      });
      front.url = sidecarOf.url;
      front.egress = sidecarOf.egressUrl;
      progress(`${name.padEnd(15)} ${sidecarOf.url} → ${agent.url} (egress ${front.egress ?? 'none'})`);
    }
    restart = async (name) => {
      const entry = fronts.get(name);
      if (entry === undefined) throw new Error(`${name} is not part of this stack`);
      await agents.get(name)?.close();
      agents.delete(name);
      await launch(name, entry.port, entry.state);
    };
    stop = async (name) => {
      await agents.get(name)?.close();
      agents.delete(name);
    };

    const admin = await startAdminApi({ listen: `${host}:${ports.service('admin').upstream}`, stores, logDestination: opts.logDestination });
    closers.push(() => admin.close());
    const adminSidecar = await sidecar('admin', admin.url);
    progress(`admin api       ${adminSidecar.url} → ${admin.url}`);
    return { issuer: issuer.issuer, dataDir, sidecars, agents, stopAgent: stop, startAgent: restart, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** The component log file inside the data directory. */
export function logFileFor(dataDir: string): string {
  return join(resolve(dataDir), 'logs', 'ca-a2a.log');
}
