import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Logger } from 'pino';
import { ToolError, asToolError } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import type { ToolDefinition, ToolDeps, ToolFamily, ToolHandler } from './tools/tool-types.js';

/** Who called, as the sidecar in front asserted it: for audit lines, and its client id to bound its backend calls. */
export interface CallerIdentity {
  subject?: string;
  client_id?: string;
  roles?: string[];
  request_id?: string;
  /** The trace id of the sidecar's `traceparent`: one document's calls at every hop share it. */
  trace_id?: string;
}

/** What a tool call produced. */
export type ToolOutcome = { ok: true; result: object } | { ok: false; error: ToolError };

/** Validates, runs, measures and audits tool calls; built once per gateway. */
export interface ToolRunner {
  readonly definitions: readonly ToolDefinition[];
  call(name: string, args: unknown, caller: CallerIdentity, transport: 'mcp' | 'rest'): Promise<ToolOutcome>;
  /**
   * A call that ran but whose result the transport did not deliver (`error` says why, `cause`
   * what failed, for the log only): counted and audited.
   */
  undelivered(name: string, caller: CallerIdentity, transport: 'mcp' | 'rest', error: ToolError, cause?: unknown): void;
}

interface CompiledTool {
  validate: ValidateFunction;
  handler: ToolHandler;
}

/**
 * Compiles every tool's schema once (ajv, strict, defaults applied) and returns the runner.
 * `depsFor` gives the backends as one caller sees them (bounded per caller).
 */
export function createToolRunner(tools: ToolFamily, depsFor: (caller: CallerIdentity) => ToolDeps, metrics: GatewayMetrics, logger: Logger): ToolRunner {
  // strictRequired off: documents_update says "at least one of these fields" with anyOf/required.
  const ajv = new Ajv({ strict: true, strictRequired: false, allowUnionTypes: true, useDefaults: true });
  addFormats.default(ajv, ['uuid']);
  const compiled = new Map<string, CompiledTool>();
  for (const { definition, handler } of Object.values(tools)) {
    compiled.set(definition.name, { validate: ajv.compile(definition.inputSchema), handler });
  }

  async function invoke(name: string, args: unknown, caller: CallerIdentity): Promise<object> {
    const tool = compiled.get(name);
    if (!tool) throw new ToolError('unknown_tool', `no tool named ${JSON.stringify(name.slice(0, 64))}`);
    // Arguments are a fresh parse of the request body, so ajv may fill defaults in place.
    const input = args ?? {};
    if (!tool.validate(input)) {
      const errors = (tool.validate.errors ?? []).map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'invalid' }));
      throw new ToolError('invalid_arguments', `arguments of ${name} are invalid`, { errors });
    }
    return tool.handler(input as Record<string, unknown>, depsFor(caller));
  }

  return {
    definitions: Object.values(tools).map((t) => t.definition),
    async call(name, args, caller, transport) {
      const started = process.hrtime.bigint();
      const toolLabel = compiled.has(name) ? name : 'unknown';
      let outcome: ToolOutcome;
      try {
        outcome = { ok: true, result: await invoke(name, args, caller) };
      } catch (err) {
        const error = asToolError(err);
        if (error.code === 'internal') logger.error({ event_type: 'mcp_tool_error', tool: toolLabel, err }, 'tool failed');
        outcome = { ok: false, error };
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const result = outcome.ok ? 'success' : outcome.error.code;
      metrics.toolCalls.inc({ tool: toolLabel, outcome: result });
      if (!outcome.ok) metrics.toolErrors.inc({ tool: toolLabel, code: result });
      metrics.toolDuration.observe({ tool: toolLabel }, seconds);
      // Audit: who, which tool, how it went; never arguments or object contents.
      logger.info(
        {
          event_type: 'mcp_tool_call',
          tool: toolLabel,
          outcome: result,
          duration_ms: Math.round(seconds * 1e6) / 1e3,
          transport,
          caller: { subject: caller.subject, client_id: caller.client_id, roles: caller.roles },
          request_id: caller.request_id,
          trace_id: caller.trace_id,
          ...(outcome.ok ? {} : { backend: outcome.error.details.backend }),
        },
        'tool call',
      );
      return outcome;
    },
    undelivered(name, caller, transport, error, cause) {
      const toolLabel = compiled.has(name) ? name : 'unknown';
      metrics.toolErrors.inc({ tool: toolLabel, code: error.code });
      logger.info(
        {
          event_type: 'mcp_tool_result_refused',
          tool: toolLabel,
          outcome: error.code,
          transport,
          caller: { subject: caller.subject, client_id: caller.client_id, roles: caller.roles },
          request_id: caller.request_id,
          trace_id: caller.trace_id,
          ...(error.details.backend ? { backend: error.details.backend } : {}),
          ...(cause instanceof Error ? { err_message: cause.message } : {}),
        },
        'tool result not delivered',
      );
    },
  };
}
