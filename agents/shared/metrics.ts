import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of one agent, on its own registry (tests run several agents in one process), served
 * at the agent's `GET /metrics` on its loopback port and, through the policy's
 * `upstream_metrics_path`, on its sidecar's admin `/metrics`: one scrape target per task. Labels are
 * bounded: agent is the agent's name on every sample, method is a method of the agent's policy or `unknown`, outcome is `success` or an agent
 * error code (rpc-errors.ts). docs/agents.md "Metrics" lists each name and
 * test/agents/metrics.test.ts keeps the two in step.
 */
export function createAgentMetrics(agent: string) {
  const registry = new Registry();
  // Appended to its sidecar's own samples, which carry `service`: `agent` names whose these are.
  registry.setDefaultLabels({ agent });
  const registers = [registry];
  return {
    registry,
    calls: new Counter({
      name: 'ca_a2a_agent_calls_total',
      help: 'JSON-RPC calls the agent answered, by method and outcome (success or an agent error code).',
      labelNames: ['method', 'outcome'] as const,
      registers,
    }),
    callDuration: new Histogram({
      name: 'ca_a2a_agent_call_duration_seconds',
      help: 'Time from a parsed call to its answer, by method (the steps the agent waited on included).',
      labelNames: ['method'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    pipelineRuns: new Counter({
      name: 'ca_a2a_agent_pipeline_runs_total',
      help: 'Orchestrator only: pipeline runs ended, by outcome (archived, failed, failed_unrecorded, interrupted) and trigger (process_document or sweep).',
      labelNames: ['outcome', 'trigger'] as const,
      registers,
    }),
    pdfAdmissions: new Counter({
      name: 'ca_a2a_agent_pdf_admissions_total',
      help: 'Extractor only: PDF extractions by admission (admitted: read in a slot of its own; joined: the same document and claim already held one; busy: every slot held, refused).',
      labelNames: ['admission'] as const,
      registers,
    }),
    pdfsHeld: new Gauge({
      name: 'ca_a2a_agent_pdfs_held',
      help: 'Extractor only: PDFs held now, fetched or waiting for the reader or being read.',
      registers,
    }),
    documentAdmissions: new Counter({
      name: 'ca_a2a_agent_document_admissions_total',
      help: 'Extractor (other than PDFs), validator and archivist: document steps by admission (admitted: a slot of its own; joined: the same document and claim already held one; busy: every slot held, refused).',
      labelNames: ['admission'] as const,
      registers,
    }),
    documentsHeld: new Gauge({
      name: 'ca_a2a_agent_documents_held',
      help: 'Extractor (other than PDFs), validator and archivist: documents held now, from before their object is fetched until the step answers.',
      registers,
    }),
    logLinesDropped: new Counter({
      name: 'ca_a2a_agent_log_lines_dropped_total',
      help: 'Log lines dropped unwritten because stdout was not being read (over 16 MiB held).',
      registers,
    }),
  };
}

/** The metrics of one agent. */
export type AgentMetrics = ReturnType<typeof createAgentMetrics>;
