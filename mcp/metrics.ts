import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SqlPoolStats } from '../proxy/stores/sql/sql-client.js';

/**
 * Every metric of one gateway instance, on its own registry (tests run several gateways in one
 * process). Labels are bounded: tool is a defined tool name or `unknown`, outcome is `success`
 * or a ToolErrorCode, backend is `postgres` or `s3`, transport is `mcp` or `rest`, stage is
 * `request` or `answer`. docs/mcp.md "Metrics" lists each name and
 * test/mcp/metrics-docs.test.ts keeps the two in step.
 */
export function createGatewayMetrics(poolStats: () => SqlPoolStats) {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    toolCalls: new Counter({
      name: 'ca_a2a_mcp_tool_calls_total',
      help: 'Tool calls by tool and outcome (success or an error code).',
      labelNames: ['tool', 'outcome'] as const,
      registers,
    }),
    toolErrors: new Counter({
      name: 'ca_a2a_mcp_tool_errors_total',
      help: 'Failed tool calls by tool and error code.',
      labelNames: ['tool', 'code'] as const,
      registers,
    }),
    toolDuration: new Histogram({
      name: 'ca_a2a_mcp_tool_duration_seconds',
      help: 'Tool call time from validated arguments to result, including retries.',
      labelNames: ['tool'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    backendAttempts: new Counter({
      name: 'ca_a2a_mcp_backend_attempts_total',
      help: 'Single attempts against a backend by result: ok, transient (retried or counted by the breaker) or permanent.',
      labelNames: ['backend', 'result'] as const,
      registers,
    }),
    breakerState: new Gauge({
      name: 'ca_a2a_mcp_breaker_state',
      help: 'Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.',
      labelNames: ['backend'] as const,
      registers,
    }),
    breakerTransitions: new Counter({
      name: 'ca_a2a_mcp_breaker_transitions_total',
      help: 'Circuit breaker state changes per backend, by the state entered.',
      labelNames: ['backend', 'state'] as const,
      registers,
    }),
    breakerRejections: new Counter({
      name: 'ca_a2a_mcp_breaker_rejections_total',
      help: 'Calls refused without trying because the backend breaker was open.',
      labelNames: ['backend'] as const,
      registers,
    }),
    callerLimited: new Counter({
      name: 'ca_a2a_mcp_caller_limited_total',
      help: 'Calls refused (caller_busy) because their caller already ran its share of the backend at once and none of those ended in time.',
      labelNames: ['backend'] as const,
      registers,
    }),
    callerWaiting: new Gauge({
      name: 'ca_a2a_mcp_caller_waiting',
      help: 'Calls waiting for one of their own caller\'s calls to the backend to end (the caller is at its bound).',
      labelNames: ['backend'] as const,
      registers,
    }),
    bucketUnreadable: new Counter({
      name: 'ca_a2a_mcp_bucket_unreadable_objects_total',
      help: 'Object files of the local-disk bucket found unreadable, by the call that met one: list (left out), get or head (refused).',
      labelNames: ['operation'] as const,
      registers,
    }),
    clientClosed: new Counter({
      name: 'ca_a2a_mcp_client_closed_total',
      help: 'Requests whose client closed its connection before their body was read whole (stage request) or their answer written whole (stage answer), by transport (mcp or rest).',
      labelNames: ['transport', 'stage'] as const,
      registers,
    }),
    logLinesDropped: new Counter({
      name: 'ca_a2a_mcp_log_lines_dropped_total',
      help: 'Log lines, tool-call audit lines included, dropped unwritten because stdout was not being read (over 16 MiB held).',
      registers,
    }),
    poolClients: new Gauge({
      name: 'ca_a2a_mcp_pool_clients',
      help: 'SQL pool connections: total, idle, and callers waiting for one.',
      labelNames: ['state'] as const,
      registers,
      collect() {
        const s = poolStats();
        this.set({ state: 'total' }, s.total);
        this.set({ state: 'idle' }, s.idle);
        this.set({ state: 'waiting' }, s.waiting);
      },
    }),
  };
}

/** The metric set of one gateway. */
export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
