/** The closed set of tool error codes; docs/mcp.md lists each under "Errors". */
export type ToolErrorCode =
  | 'invalid_request'
  | 'unknown_tool'
  | 'invalid_arguments'
  | 'invalid_key'
  | 'not_found'
  | 'conflict'
  | 'claim_superseded'
  | 'too_large'
  | 'caller_busy'
  | 'backend_unavailable'
  | 'backend_error'
  | 'internal';

/** HTTP status of `POST /call_tool` per code, and whether the message is shown to the caller. */
export const TOOL_ERRORS = {
  invalid_request: { status: 400, expose: true },
  unknown_tool: { status: 404, expose: true },
  invalid_arguments: { status: 400, expose: true },
  invalid_key: { status: 400, expose: true },
  not_found: { status: 404, expose: true },
  conflict: { status: 409, expose: true },
  claim_superseded: { status: 409, expose: true },
  too_large: { status: 413, expose: true },
  caller_busy: { status: 429, expose: true },
  backend_unavailable: { status: 503, expose: true },
  backend_error: { status: 502, expose: true },
  internal: { status: 500, expose: false },
} as const satisfies Record<ToolErrorCode, { status: number; expose: boolean }>;

/** Extra machine-readable fields a tool error may carry on the wire. */
export interface ToolErrorDetails {
  backend?: string;
  retry_after_seconds?: number;
  current_status?: string;
  current_claim_count?: number;
  errors?: { path: string; message: string }[];
}

/** An expected tool failure with a stable code; anything else thrown by a tool is `internal`. */
export class ToolError extends Error {
  readonly code: ToolErrorCode;
  readonly details: ToolErrorDetails;

  constructor(code: ToolErrorCode, message: string, details: ToolErrorDetails = {}) {
    super(message);
    this.name = 'ToolError';
    this.code = code;
    this.details = details;
  }
}

/**
 * The client closed its connection before its request body was read whole (`request`) or its
 * answer written whole (`answer`): nothing is owed to anyone, and nothing of the gateway failed.
 */
export class ClientClosed extends Error {
  readonly stage: 'request' | 'answer';

  constructor(stage: 'request' | 'answer') {
    super(`the client closed its connection before its ${stage} was whole`);
    this.name = 'ClientClosed';
    this.stage = stage;
  }
}

/** An object read that failed midway (the bucket, or an object shorter than its metadata), on either transport. */
export function objectCutShort(): ToolError {
  return new ToolError('backend_error', 'the object could not be read to its end', { backend: 's3' });
}

/** The wire form of an error: `{ code, message, ...details }`, with 5xx detail hidden. */
export interface WireError extends ToolErrorDetails {
  code: ToolErrorCode;
  message: string;
}

/** Matches on the `name`/`code` pair rather than `instanceof`, so copies of this module agree. */
export function asToolError(err: unknown): ToolError {
  if (err instanceof Error && err.name === 'ToolError' && 'code' in err && 'details' in err) {
    return err as ToolError;
  }
  return new ToolError('internal', 'internal error');
}

/** Converts a tool error to what a caller sees. */
export function toWireError(err: ToolError): WireError {
  const message = TOOL_ERRORS[err.code].expose ? err.message : 'internal error';
  return { code: err.code, message, ...err.details };
}
