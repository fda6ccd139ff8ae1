import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { AGENT_NAMES, startAgent, type AgentName, type RunningAgent, type StartAgentOptions } from '../../../agents/registry.js';
import { startMcpGateway, type McpGateway, type McpGatewayOptions } from '../../../mcp/gateway.js';
import { createTestSchema, tempDir } from '../../mcp/helpers.js';
import { startDirectRouter, type DirectRouter } from './direct-router.js';

/** A JSON-RPC answer. */
export interface RpcAnswer {
  readonly result?: Record<string, unknown> & { documents?: Record<string, unknown>[] };
  readonly error?: { code: number; message: string; data?: Record<string, unknown> };
}

/** The gateway and the four agents wired through direct routers. */
export interface AgentStack {
  readonly gateway: McpGateway;
  readonly agents: Map<AgentName, RunningAgent>;
  /** The gateway's PostgreSQL (its own schema) when started with `postgres`, for a test to set up rows. */
  readonly databaseUrl: string | undefined;
  /** POSTs JSON-RPC straight to an agent's /message, as its sidecar would (identity headers set). */
  call(service: AgentName, method: string, params: unknown, clientId?: string): Promise<RpcAnswer>;
  /**
   * Moves the documents' claimed_at and updated_at an hour back in the gateway's PostgreSQL (a
   * stack started with `postgres`): by the database's clock their claim and their last step are
   * an hour old, stale to any window under that, with no test waiting a window out.
   */
  ageDocuments(...ids: string[]): Promise<void>;
  /** upload_document of a file of examples/documents/. */
  uploadSample(filename: string, contentType: string): Promise<string>;
  stopAgent(name: AgentName): Promise<void>;
  startAgent(name: AgentName): Promise<void>;
  /** Sends the other agents' calls to `name` to this URL instead (undefined: back to the agent). */
  routeTo(name: AgentName, url: string | undefined): void;
  /** Sends the agents' gateway calls to this URL instead (undefined: back to the gateway). */
  routeGatewayTo(url: string | undefined): void;
  close(): Promise<void>;
}

export const SAMPLES_DIR = new URL('../../../examples/documents/', import.meta.url);

const quiet = () => pino({ level: 'warn' }, new Writable({ write: (_chunk, _enc, done) => done() }));

/**
 * Starts a gateway (PGlite, or PostgreSQL in its own schema; `gateway` adds to its options) and
 * the agents behind direct routers; the agents log to `logger` (default: nowhere). A gateway or an
 * agent that cannot start rejects the whole stack, naming it and why, once everything made before
 * it is closed and removed (the schema, the data directory).
 */
export async function startAgentStack(options: {
  postgres?: boolean; orchestrator?: StartAgentOptions['orchestrator']; stepTimeoutMs?: number; extractor?: StartAgentOptions['extractor'];
  validator?: StartAgentOptions['validator']; archivist?: StartAgentOptions['archivist']; logger?: Logger;
  gateway?: Omit<McpGatewayOptions, 'port' | 'dataDir' | 'databaseUrl' | 'logger'>;
} = {}): Promise<AgentStack> {
  const dataDir = await tempDir();
  let schema: Awaited<ReturnType<typeof createTestSchema>> | undefined;
  let gateway: McpGateway;
  try {
    schema = options.postgres ? await createTestSchema() : undefined;
    gateway = await startMcpGateway({ ...options.gateway, port: 0, dataDir, databaseUrl: schema?.urlFor(), logger: quiet() });
  } catch (error) {
    // Left behind, each failed start would add a schema and a directory that no run removes.
    await schema?.drop();
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`the agent stack did not start: the gateway: ${(error as Error).message}`, { cause: error });
  }
  const agents = new Map<AgentName, RunningAgent>();
  const routers = new Map<AgentName, DirectRouter>();
  const overrides = new Map<AgentName, string>();
  let gatewayOverride: string | undefined;
  const targets = { gatewayUrl: () => gatewayOverride ?? gateway.url, agentUrl: (s: string) => overrides.get(s as AgentName) ?? agents.get(s as AgentName)?.url };
  const launch = async (name: AgentName): Promise<void> => {
    let router = routers.get(name);
    if (!router) {
      router = await startDirectRouter(name, targets);
      routers.set(name, router);
    }
    const retry = { attempts: 2, initialDelayMs: 50, maxDelayMs: 100 };
    agents.set(name, await startAgent(name, {
      port: 0, egressUrl: router.url, logger: options.logger ?? quiet(), stepTimeoutMs: options.stepTimeoutMs,
      orchestrator: { sweepIntervalMs: 0, retry, ...options.orchestrator },
      extractor: options.extractor, validator: options.validator, archivist: options.archivist,
    }));
  };
  const closeAll = async (): Promise<void> => {
    for (const agent of agents.values()) await agent.close();
    for (const router of routers.values()) await router.close();
    await gateway.close();
    await schema?.drop();
    await rm(dataDir, { recursive: true, force: true });
  };
  for (const name of AGENT_NAMES) {
    try {
      await launch(name);
    } catch (error) {
      // What did start is closed: left open, the gateway and the routers would keep the test
      // file's process alive after its tests, and the run would hang instead of failing.
      await closeAll();
      throw new Error(`the agent stack did not start: ${name}: ${(error as Error).message}`, { cause: error });
    }
  }

  const call = async (service: AgentName, method: string, params: unknown, clientId = 'admin'): Promise<RpcAnswer> => {
    const agent = agents.get(service);
    if (!agent) throw new Error(`${service} is not running`);
    const res = await fetch(`${agent.url}/message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-ca-a2a-client-id': clientId, 'x-ca-a2a-roles': clientId, 'x-ca-a2a-request-id': randomUUID() },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    return (await res.json()) as RpcAnswer;
  };
  return {
    gateway,
    agents,
    databaseUrl: schema?.urlFor(),
    call,
    async ageDocuments(...ids) {
      if (!schema) throw new Error('ageDocuments needs a stack started with postgres');
      const db = new pg.Client({ connectionString: schema.urlFor() });
      await db.connect();
      try {
        const aged = await db.query(
          `UPDATE documents SET claimed_at = claimed_at - interval '1 hour', updated_at = updated_at - interval '1 hour' WHERE document_id = ANY($1)`,
          [ids],
        );
        if (aged.rowCount !== new Set(ids).size) throw new Error(`aged ${aged.rowCount} of the documents ${ids.join(', ')}`);
      } finally {
        await db.end();
      }
    },
    async uploadSample(filename, contentType) {
      const bytes = await readFile(new URL(filename, SAMPLES_DIR));
      const answer = await call('orchestrator', 'upload_document', { filename, content_type: contentType, content_base64: bytes.toString('base64') }, 'lambda');
      if (!answer.result) throw new Error(`upload failed: ${JSON.stringify(answer.error)}`);
      return String(answer.result['document_id']);
    },
    async stopAgent(name) {
      await agents.get(name)?.close();
      agents.delete(name);
    },
    startAgent: launch,
    routeTo(name, url) {
      if (url === undefined) overrides.delete(name);
      else overrides.set(name, url);
    },
    routeGatewayTo(url) {
      gatewayOverride = url;
    },
    close: closeAll,
  };
}
