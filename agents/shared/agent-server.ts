import type { Logger } from 'pino';
import { buildAgentCard } from './agent-card.js';
import { startJsonRpcServer, type JsonRpcServer, type MethodHandler } from './jsonrpc-server.js';
import { loadMethodSpecs } from './method-specs.js';
import type { AgentMetrics } from './metrics.js';
import { compileParams } from './params.js';

/** Options of {@link serveAgent}. */
export interface ServeAgentOptions {
  /** The shipped service name; its policy file lists the methods. */
  readonly service: string;
  readonly description: string;
  /** One handler per method of the policy, no more, no fewer. */
  readonly handlers: Readonly<Record<string, MethodHandler>>;
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  readonly metrics: AgentMetrics;
  /** The URL clients send JSON-RPC to (the sidecar's `/message`); default from the Host header. */
  readonly publicUrl?: string | (() => string | undefined) | undefined;
  readonly issuer?: string | undefined;
  readonly health?: () => Record<string, unknown>;
}

/**
 * Serves one agent: its methods, params schemas and agent card all come from the service policy,
 * and a mismatch between the policy and the handlers stops the start instead of surfacing later
 * as a method the sidecar lets through but the agent does not know.
 */
export async function serveAgent(opts: ServeAgentOptions): Promise<JsonRpcServer> {
  const specs = loadMethodSpecs(opts.service);
  const declared = specs.map((spec) => spec.name).sort();
  const handled = Object.keys(opts.handlers).sort();
  if (declared.join() !== handled.join()) {
    throw new Error(`${opts.service}: policy methods [${declared.join(', ')}] differ from the agent's [${handled.join(', ')}]`);
  }
  return startJsonRpcServer({
    name: opts.service,
    host: opts.host,
    port: opts.port,
    handlers: opts.handlers,
    validators: compileParams(specs),
    logger: opts.logger,
    metrics: opts.metrics,
    health: opts.health ?? (() => ({})),
    card: (req) => buildAgentCard({
      name: opts.service,
      description: opts.description,
      url: (typeof opts.publicUrl === 'function' ? opts.publicUrl() : opts.publicUrl) ?? `http://${req.headers.host ?? `${opts.host}:${opts.port}`}/message`,
      methods: specs,
      issuer: opts.issuer,
    }),
  });
}
