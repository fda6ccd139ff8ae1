/**
 * The errors an agent answers with. JSON-RPC reserves -32768..-32000 for the protocol and
 * implementation-defined server errors; the agents' own codes sit in -32040..-32020, clear of the
 * sidecar's refusal codes (-32010..-32019) so a caller can tell "the agent said no" from "the
 * policy said no".
 */
export const AGENT_ERRORS = {
  parse_error: { rpcCode: -32700, status: 400 },
  invalid_request: { rpcCode: -32600, status: 400 },
  method_not_found: { rpcCode: -32601, status: 404 },
  invalid_params: { rpcCode: -32602, status: 400 },
  internal: { rpcCode: -32603, status: 500 },
  not_found: { rpcCode: -32020, status: 404 },
  conflict: { rpcCode: -32021, status: 409 },
  unsupported_format: { rpcCode: -32022, status: 422 },
  corrupt_document: { rpcCode: -32023, status: 422 },
  claim_superseded: { rpcCode: -32024, status: 409 },
  busy: { rpcCode: -32025, status: 503 },
  dependency_failed: { rpcCode: -32030, status: 502 },
} as const satisfies Record<string, { rpcCode: number; status: number }>;

/** One of the stable error names of {@link AGENT_ERRORS}. */
export type AgentErrorCode = keyof typeof AGENT_ERRORS;

/** An expected refusal: its message and data go to the caller as they are. */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly code: AgentErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: AgentErrorCode, message: string, data?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

/** Matches on `name` and `code` rather than instanceof (works across module copies). */
export function isAgentError(error: unknown): error is AgentError {
  const code: unknown = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && error.name === 'AgentError' && typeof code === 'string' && Object.hasOwn(AGENT_ERRORS, code);
}

/** The JSON-RPC error object for an error; anything unexpected becomes a bare "internal error". */
export function toRpcError(error: unknown): { code: number; message: string; data?: Record<string, unknown> } {
  if (!isAgentError(error)) return { code: AGENT_ERRORS.internal.rpcCode, message: 'internal error' };
  return {
    code: AGENT_ERRORS[error.code].rpcCode,
    message: error.message,
    data: { reason: error.code, ...error.data },
  };
}
