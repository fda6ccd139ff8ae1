import { createLogger, type Logger } from '../proxy/observe/logger.js';
import { archivistHandlers } from './archivist/archivist.js';
import { extractorHandlers, type ExtractorOptions } from './extractor/extractor.js';
import { createOrchestrator, type OrchestratorOptions } from './orchestrator/orchestrator.js';
import type { PipelineOutcome } from './orchestrator/pipeline.js';
import { serveAgent } from './shared/agent-server.js';
import { createEgressClient, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_TOOL_TIMEOUT_MS, type EgressClient } from './shared/egress-client.js';
import type { MethodHandler } from './shared/jsonrpc-server.js';
import { DEFAULT_MAX_DOCUMENTS, type DocumentHolderOptions } from './shared/document-slots.js';
import { DEFAULT_MAX_PDFS } from './extractor/pdf-admission.js';
import { createAgentMetrics, type AgentMetrics } from './shared/metrics.js';
import { validatorHandlers } from './validator/validator.js';

/** The four pipeline agents. */
export const AGENT_NAMES = ['orchestrator', 'extractor', 'validator', 'archivist'] as const;

/** One of {@link AGENT_NAMES}. */
export type AgentName = (typeof AGENT_NAMES)[number];

export function isAgentName(name: string): name is AgentName {
  return (AGENT_NAMES as readonly string[]).includes(name);
}

const DESCRIPTIONS: Readonly<Record<AgentName, string>> = {
  orchestrator: 'Entry point of the document pipeline: uploads documents and drives extract → validate → archive.',
  extractor: 'Extracts text and structured fields from PDF (text layer), CSV, JSON and plain-text documents.',
  validator: 'Runs named validation rules (hash, size, structure, field formats) and scores a document.',
  archivist: 'Records the final state of documents, keeps an archive copy, and serves reads, listings and deletes.',
};

/** Options of {@link startAgent}. */
export interface StartAgentOptions {
  /** Default 127.0.0.1: an agent is reached only through its sidecar on the same host. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** The agent's sidecar egress listener (CA_A2A_EGRESS_URL); a function is read per call. */
  readonly egressUrl: string | (() => string);
  /**
   * Where its lines go. Default: stdout through the sidecar's bounded, buffered logger, each line
   * dropped past the bound counted in `ca_a2a_agent_log_lines_dropped_total`; a logger given here
   * is the caller's to bound.
   */
  readonly logger?: Logger;
  /** The sidecar's `/message` URL, advertised in the agent card; a function is read per request. */
  readonly publicUrl?: string | (() => string | undefined);
  readonly issuer?: string;
  /** How long one try of an MCP tool call may take, its answer read whole (default {@link DEFAULT_TOOL_TIMEOUT_MS}). */
  readonly toolTimeoutMs?: number;
  /**
   * Orchestrator only: how long one attempt of a step, a call to a step agent, may take, its answer
   * read whole (default {@link DEFAULT_CALL_TIMEOUT_MS}).
   */
  readonly stepTimeoutMs?: number;
  /** Orchestrator only: stale window, sweep period, step retries. */
  readonly orchestrator?: Omit<OrchestratorOptions, 'egress' | 'logger' | 'onRunFinished'>;
  /** Extractor only: how many PDFs, and how many other documents, it holds at once. */
  readonly extractor?: ExtractorOptions;
  /** Validator only: how many documents it holds at once. */
  readonly validator?: DocumentHolderOptions;
  /** Archivist only: how many documents it holds at once. */
  readonly archivist?: DocumentHolderOptions;
}

/** A running agent. */
export interface RunningAgent {
  readonly name: AgentName;
  readonly url: string;
  readonly port: number;
  /** The logger it writes to (the one given, or its own on stdout), for its command's lines. */
  readonly logger: Logger;
  /** Orchestrator only: run the stale sweep now (tests, operators); other agents resolve {}. */
  sweep(): Promise<Record<string, PipelineOutcome>>;
  /** Stops the sweep and the server, then flushes its log. */
  close(): Promise<void>;
}

function handlersFor(name: Exclude<AgentName, 'orchestrator'>, egress: EgressClient, metrics: AgentMetrics, opts: StartAgentOptions): Record<string, MethodHandler> {
  switch (name) {
    case 'extractor':
      return extractorHandlers(egress, metrics, opts.extractor);
    case 'validator':
      return validatorHandlers(egress, metrics, opts.validator);
    case 'archivist':
      return archivistHandlers(egress, metrics, opts.archivist);
  }
}

/** The bound a step agent runs with, defaults included, for its start line. */
function boundsOf(name: Exclude<AgentName, 'orchestrator'>, opts: StartAgentOptions): Record<string, number> {
  switch (name) {
    case 'extractor':
      return { max_pdfs: opts.extractor?.maxPdfs ?? DEFAULT_MAX_PDFS, max_documents: opts.extractor?.maxDocuments ?? DEFAULT_MAX_DOCUMENTS };
    case 'validator':
      return { max_documents: opts.validator?.maxDocuments ?? DEFAULT_MAX_DOCUMENTS };
    case 'archivist':
      return { max_documents: opts.archivist?.maxDocuments ?? DEFAULT_MAX_DOCUMENTS };
  }
}

/** Starts one agent on 127.0.0.1 (by default) with its egress client. */
export async function startAgent(name: AgentName, opts: StartAgentOptions): Promise<RunningAgent> {
  // Made first so that its counter can count the lines dropped from the start.
  const metrics = createAgentMetrics(name);
  const logger = opts.logger ?? createLogger({ service: name, onDrop: () => metrics.logLinesDropped.inc() });
  const toolTimeoutMs = opts.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  // Only the orchestrator calls other agents.
  const stepTimeoutMs = opts.stepTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const egress = createEgressClient({ baseUrl: opts.egressUrl, toolTimeoutMs, callTimeoutMs: stepTimeoutMs });
  const orchestrator = name === 'orchestrator' ? createOrchestrator({
    egress, logger, ...opts.orchestrator,
    onRunFinished: (outcome, trigger) => metrics.pipelineRuns.inc({ outcome: outcome.status, trigger }),
  }) : undefined;
  const handlers = orchestrator?.handlers ?? handlersFor(name as Exclude<AgentName, 'orchestrator'>, egress, metrics, opts);
  let server;
  try {
    server = await serveAgent({
      service: name, description: DESCRIPTIONS[name], handlers, logger, metrics,
      host: opts.host ?? '127.0.0.1', port: opts.port, publicUrl: opts.publicUrl, issuer: opts.issuer,
    });
  } catch (error) {
    orchestrator?.close();
    throw error;
  }
  const own = orchestrator ? { ...orchestrator.settings, step_timeout_seconds: stepTimeoutMs / 1000 } : boundsOf(name as Exclude<AgentName, 'orchestrator'>, opts);
  const settings = { ...own, tool_timeout_seconds: toolTimeoutMs / 1000 };
  logger.info({ event_type: 'agent_started', agent: name, url: server.url, settings }, 'agent listening');
  return {
    name,
    url: server.url,
    port: server.port,
    logger,
    sweep: () => orchestrator?.sweep() ?? Promise.resolve({}),
    async close() {
      orchestrator?.close();
      await server.close();
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
    },
  };
}
