import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentError } from './rpc-errors.js';
import { isReadOnlyTool } from '../../mcp/tools/tool-hints.js';
import { traceHeadersOfCurrentCall } from './trace.js';

/** Why a call through the egress failed. */
export type EgressFailureKind =
  /** The egress listener, the sidecar or the target could not be reached or timed out (retryable). */
  | 'transport'
  /** The sidecar refused the call (policy, token): not retryable. */
  | 'refused'
  /**
   * Refused before anything ran, by a bound that asks the caller to come back: a sidecar's rate
   * limit (429 `ratelimit.exceeded`) or request-body budget (503 `transport.overloaded`), which
   * forwarded nothing, or the gateway's per-caller bound (429 `caller_busy`), which ran nothing.
   * The client already waited and asked again where the wait allowed; `data.retry_after_seconds`
   * says how long it was asked to wait (absent when no usable value was given).
   */
  | 'rate_limited'
  /** The target answered with an error of its own. */
  | 'remote';

/** A failed MCP tool call or JSON-RPC call, with the remote error's code when there is one. */
export class EgressError extends Error {
  override readonly name = 'EgressError';
  readonly kind: EgressFailureKind;
  /** HTTP status of the answer, 0 when there was none. */
  readonly status: number;
  /** The MCP error code (`not_found`, `conflict`…) or the JSON-RPC error code as a string. */
  readonly code: string;
  readonly data: Record<string, unknown> | undefined;

  constructor(kind: EgressFailureKind, status: number, code: string, message: string, data?: Record<string, unknown>) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

/** Matches on name rather than instanceof (module copies). */
export function isEgressError(error: unknown): error is EgressError {
  return error instanceof Error && error.name === 'EgressError';
}

/** Attempts and backoff of a step whose hop failed (sidecar or agent down, timeout). */
export interface RetryOptions {
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 4, initialDelayMs: 250, maxDelayMs: 4_000 };

/**
 * Of a read-only MCP tool call whose hop failed (the gateway restarting, its sidecar briefly
 * unreachable, a 503 from an open breaker): a few quick attempts, so that a blip of a second does
 * not fail a document step. A call that changes something is never repeated: its answer may have
 * been lost after it took effect.
 */
export const DEFAULT_TOOL_RETRY: RetryOptions = { attempts: 3, initialDelayMs: 200, maxDelayMs: 1_000 };

/** A hop that failed: no answer, or 502/503/504 from a sidecar (but 503 `transport.overloaded`, which is `rate_limited`). */
export function isTransportFailure(error: unknown): error is EgressError {
  return isEgressError(error) && error.kind === 'transport';
}

/** Whether a wait of `ms` from now ends before `deadline` (a time on performance.now()'s clock). */
function endsBefore(ms: number, deadline: number): boolean {
  return performance.now() + ms < deadline;
}

/**
 * Retries the failures `retryable` names, by default transport failures only: an agent that
 * answered (even with an error) has decided, and asking again would not change its mind. Each
 * step is idempotent, so a retry after a lost answer is safe. No retry starts whose backoff
 * would end past `deadline` (performance.now()'s clock).
 */
export async function withRetry<T>(options: RetryOptions, call: () => Promise<T>, retryable: (error: unknown) => boolean = isTransportFailure, deadline = Infinity): Promise<T> {
  let delay = options.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= options.attempts || !retryable(error) || !endsBefore(delay, deadline)) throw error;
      await sleep(delay);
      delay = Math.min(delay * 2, options.maxDelayMs);
    }
  }
}

/** Attempts of a call refused as `rate_limited`, and the longest wait the client takes. */
export interface RateLimitRetryOptions {
  readonly attempts: number;
  readonly maxRetryAfterSeconds: number;
  /** The wait after the gateway's `caller_busy` when it carries no Retry-After (default 1). */
  readonly callerBusyWaitSeconds?: number;
}

/**
 * A `rate_limited` refusal means the request was not forwarded, or ran nothing, so asking again is
 * safe for every call, a tool call that changes something included. A short wait is taken here; a
 * longer one is the caller's to decide (a document step should fail and be retaken, not hold a worker).
 */
export const DEFAULT_RATE_LIMIT_RETRY: RateLimitRetryOptions = { attempts: 3, maxRetryAfterSeconds: 10, callerBusyWaitSeconds: 1 };

/** RFC 9110 §10.2.3 delay-seconds (a non-negative decimal integer); an HTTP-date or anything else is not usable here. */
export function retryAfterSeconds(header: string | null): number | undefined {
  const value = header?.trim() ?? '';
  return /^\d{1,9}$/.test(value) ? Number(value) : undefined;
}

/**
 * Waits Retry-After and calls again on a `rate_limited` refusal, when the wait is short, ends
 * before `deadline` and attempts remain. `refused` counts the refusals of one call across every
 * loop it runs in: a read-only tool call's hop retries (withRetry) each start this loop again, and
 * would otherwise each get their own attempts.
 */
async function withRateLimitRetry<T>(options: RateLimitRetryOptions, call: () => Promise<T>, refused = { count: 0 }, deadline = Infinity): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!isEgressError(error) || error.kind !== 'rate_limited') throw error;
      const attempt = ++refused.count;
      const wait = error.data?.['retry_after_seconds'];
      if (typeof wait !== 'number') throw withMessage(error, `${error.message} (no usable Retry-After; not retried)`);
      if (wait > options.maxRetryAfterSeconds) throw withMessage(error, `${error.message} (retry after ${wait} s, longer than the ${options.maxRetryAfterSeconds} s this client waits)`);
      if (attempt >= options.attempts) throw withMessage(error, `${error.message} (still after ${attempt} attempt(s); retry after ${wait} s)`);
      if (!endsBefore(wait * 1000, deadline)) throw withMessage(error, `${error.message} (retry after ${wait} s, past the call's deadline)`);
      await sleep(wait * 1000);
    }
  }
}

function withMessage(error: EgressError, message: string): EgressError {
  return new EgressError(error.kind, error.status, error.code, message, error.data);
}

/**
 * How long one try of an MCP tool call may take, its answer read whole, unless told otherwise: the
 * sidecars' own bounds (`egress.timeout_ms`, `limits.upstream_timeout_ms`) and the gateway's upload
 * bound are 30 s by default too.
 */
export const DEFAULT_TOOL_TIMEOUT_MS = 30_000;

/**
 * How long one try of a call to another agent may take, its answer read whole, unless told
 * otherwise: a step agent's method runs several tool calls of its own, each within its tool timeout.
 * Below the orchestrator's default stale window (120 s): a step still running when the window ends
 * would have its document taken over while it is being worked on.
 */
export const DEFAULT_CALL_TIMEOUT_MS = 90_000;

/** Options of {@link createEgressClient}. */
export interface EgressClientOptions {
  /**
   * The agent's sidecar egress listener, e.g. http://127.0.0.1:15001 (CA_A2A_EGRESS_URL). A function
   * is read per call: `ca-a2a up` on port 0 learns the sidecar's port after the agent started.
   */
  readonly baseUrl: string | (() => string);
  /** How long one try of a tool call may take, its answer read whole (default {@link DEFAULT_TOOL_TIMEOUT_MS}). */
  readonly toolTimeoutMs?: number;
  /** How long one try of a call to another agent may take, its answer read whole (default {@link DEFAULT_CALL_TIMEOUT_MS}). */
  readonly callTimeoutMs?: number;
  /** Retries of read-only tool calls whose hop failed (default {@link DEFAULT_TOOL_RETRY}). */
  readonly toolRetry?: RetryOptions;
  /** Retries of any call refused as `rate_limited` (default {@link DEFAULT_RATE_LIMIT_RETRY}). */
  readonly rateLimitRetry?: RateLimitRetryOptions;
  /** The largest answer read (default {@link DEFAULT_MAX_ANSWER_BYTES}); a larger one fails the call, `answer_too_large`. */
  readonly maxAnswerBytes?: number;
}

/** Options of one call to another agent. */
export interface CallOptions {
  /**
   * When the call must be over, on performance.now()'s clock: each try is cut at it (its timeout
   * the call timeout or what is left, the shorter), and no wait after a `rate_limited` refusal
   * runs past it. Called with no time left, the call sends nothing and fails as a timed-out hop.
   */
  readonly deadline?: number;
}

/** How an agent reaches the MCP gateway and the other agents: always through its own sidecar. */
export interface EgressClient {
  /**
   * `POST {egress}/mcp/call_tool`; resolves the tool's result (without `success`). A read-only
   * tool's call is made again when its hop failed (`toolRetry`); any call is made again after a
   * short wait when it was refused as `rate_limited` (`rateLimitRetry`).
   */
  callTool<T>(tool: string, args: Record<string, unknown>): Promise<T>;
  /** `POST {egress}/SERVICE/message`; resolves the JSON-RPC `result`. Made again only after a `rate_limited` refusal (`rateLimitRetry`). */
  call<T>(service: string, method: string, params: Record<string, unknown>, options?: CallOptions): Promise<T>;
}

interface JsonRpcErrorBody { error?: { code?: unknown; message?: unknown; data?: unknown } }

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** 502/503/504 mean the hop, not the request, failed: the caller may retry. */
const TRANSPORT_STATUSES = new Set([502, 503, 504]);

interface Answer {
  readonly status: number;
  readonly json: unknown;
  readonly retryAfter: string | null;
}

/**
 * The largest answer read: the gateway's largest object (10 MiB) is 14 MiB of base64, and a
 * document's row with its extraction (100 000 characters of text, up to 20 000 cells of 2 000)
 * can be a few tens of MiB of JSON. Past it the answer is not read on: a broken or hostile hop
 * must not fill the agent's memory.
 */
export const DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** The body of an answer, read up to `limit` bytes; an EgressError `answer_too_large` past it. */
async function readCapped(response: Response, limit: number, path: string): Promise<string> {
  const tooLarge = () => new EgressError('remote', response.status, 'answer_too_large', `${path}: answer over ${limit} bytes, not read`);
  if (Number(response.headers.get('content-length')) > limit) {
    await response.body?.cancel();
    throw tooLarge();
  }
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function post(url: string, body: unknown, timeoutMs: number, maxAnswerBytes: number): Promise<Answer> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { ...traceHeadersOfCurrentCall(), 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      // A redirect is never followed: fetch would post the body again, straight to the Location,
      // past the sidecar (no policy, no token, no audit line).
      redirect: 'manual',
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new EgressError('transport', 0, 'unreachable', `${new URL(url).pathname}: ${cause}`);
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    throw new EgressError('remote', response.status, 'redirect', `${new URL(url).pathname}: answered a redirect (HTTP ${response.status}), not followed`);
  }
  let text: string;
  try {
    text = await readCapped(response, maxAnswerBytes, new URL(url).pathname);
  } catch (error) {
    if (isEgressError(error)) throw error;
    // The answer stalled past the timeout or was cut mid-body: the hop failed, as above.
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new EgressError('transport', response.status, 'unreachable', `${new URL(url).pathname}: answer cut off (${cause})`);
  }
  try {
    return { status: response.status, json: JSON.parse(text) as unknown, retryAfter: response.headers.get('retry-after') };
  } catch {
    throw new EgressError('transport', response.status, 'bad_answer', `${new URL(url).pathname}: answer is not JSON (HTTP ${response.status})`);
  }
}

/** A JSON-RPC error body coming from the sidecar rather than the target. */
function sidecarRefusal({ status, json, retryAfter }: Answer): EgressError | undefined {
  const error = (json as JsonRpcErrorBody).error;
  if (!isRecord(json) || json['jsonrpc'] !== '2.0' || !isRecord(error)) return undefined;
  const data = isRecord(error.data) ? error.data : undefined;
  const reason = typeof data?.['reason'] === 'string' ? data['reason'] : String(error.code);
  const message = String(error.message ?? 'refused');
  // Only these refusals of the sidecar's own (docs/errors.md) are known not to have been forwarded:
  // the rate limit's, and the body budget's (the transport layer, before any other).
  if ((status === 429 && reason === 'ratelimit.exceeded') || (status === 503 && reason === 'transport.overloaded')) {
    return new EgressError('rate_limited', status, reason, message, { ...data, retry_after_seconds: retryAfterSeconds(retryAfter) });
  }
  return new EgressError(TRANSPORT_STATUSES.has(status) ? 'transport' : 'refused', status, reason, message, data);
}

/** Creates the egress client of one agent. */
export function createEgressClient(opts: EgressClientOptions): EgressClient {
  const base = (): string => (typeof opts.baseUrl === 'string' ? opts.baseUrl : opts.baseUrl()).replace(/\/+$/, '');
  const toolTimeout = opts.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const callTimeout = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const toolRetry = opts.toolRetry ?? DEFAULT_TOOL_RETRY;
  const rateLimitRetry = opts.rateLimitRetry ?? DEFAULT_RATE_LIMIT_RETRY;
  const callerBusyWait = rateLimitRetry.callerBusyWaitSeconds ?? DEFAULT_RATE_LIMIT_RETRY.callerBusyWaitSeconds;
  const maxAnswer = opts.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES;
  const callToolOnce = async <T>(tool: string, args: Record<string, unknown>): Promise<T> => {
    const answer = await post(`${base()}/mcp/call_tool`, { tool, arguments: args }, toolTimeout, maxAnswer);
    const { status, json, retryAfter } = answer;
    if (isRecord(json) && json['success'] === true) {
      const { success: _success, ...result } = json;
      return result as T;
    }
    if (isRecord(json) && json['success'] === false && isRecord(json['error'])) {
      const { code, message, ...data } = json['error'];
      // The gateway's per-caller bound, passed back by both sidecars as the gateway wrote it: the
      // call waited for one of this caller's own and ran nothing (docs/mcp.md).
      if (status === 429 && code === 'caller_busy') {
        throw new EgressError('rate_limited', status, code, `${tool}: ${String(message)}`, { ...data, retry_after_seconds: retryAfterSeconds(retryAfter) ?? callerBusyWait });
      }
      const kind = TRANSPORT_STATUSES.has(status) ? 'transport' : 'remote';
      throw new EgressError(kind, status, String(code), `${tool}: ${String(message)}`, data);
    }
    throw sidecarRefusal(answer) ?? new EgressError('transport', status, 'bad_answer', `${tool}: unexpected answer (HTTP ${status})`);
  };
  const callOnce = async <T>(service: string, method: string, params: Record<string, unknown>, deadline: number): Promise<T> => {
    // Whole milliseconds, as AbortSignal.timeout takes them.
    const timeout = Math.min(callTimeout, Math.ceil(deadline - performance.now()));
    const path = `/${encodeURIComponent(service)}/message`;
    if (!(timeout > 0)) throw new EgressError('transport', 0, 'unreachable', `${path}: TimeoutError (no time left before the call's deadline; not sent)`);
    const id = randomUUID();
    const answer = await post(`${base()}${path}`, { jsonrpc: '2.0', id, method, params }, timeout, maxAnswer);
    const { status, json } = answer;
    // The target answers JSON-RPC with HTTP 200; any other status is the sidecar's (or a hop's) refusal.
    if (status === 200 && isRecord(json) && json['jsonrpc'] === '2.0' && json['id'] === id) {
      if (Object.hasOwn(json, 'result')) return json['result'] as T;
      const error = (json as JsonRpcErrorBody).error;
      const data = isRecord(error?.data) ? error.data : undefined;
      throw new EgressError('remote', status, String(data?.['reason'] ?? error?.code), String(error?.message ?? 'error'), data);
    }
    throw sidecarRefusal(answer) ?? new EgressError('transport', status, 'bad_answer', `${service}.${method}: unexpected answer (HTTP ${status})`);
  };
  return {
    callTool<T>(tool: string, args: Record<string, unknown>): Promise<T> {
      const refused = { count: 0 };
      const once = (): Promise<T> => withRateLimitRetry(rateLimitRetry, () => callToolOnce<T>(tool, args), refused);
      return isReadOnlyTool(tool) ? withRetry(toolRetry, once) : once();
    },
    call<T>(service: string, method: string, params: Record<string, unknown>, options: CallOptions = {}): Promise<T> {
      const deadline = options.deadline ?? Infinity;
      // A fresh JSON-RPC id per attempt: the first was refused before the target saw it.
      return withRateLimitRetry(rateLimitRetry, () => callOnce<T>(service, method, params, deadline), { count: 0 }, deadline);
    },
  };
}

/** Turns a failed dependency call into the agent's own error; not_found, conflict and claim_superseded keep their meaning. */
export function asAgentError(error: unknown): unknown {
  if (!isEgressError(error)) return error;
  if (error.kind === 'remote' && error.code === 'not_found') return new AgentError('not_found', error.message);
  if (error.kind === 'remote' && error.code === 'invalid_arguments') return new AgentError('invalid_params', error.message, error.data);
  if (error.kind === 'remote' && error.code === 'conflict') return new AgentError('conflict', error.message, error.data);
  if (error.kind === 'remote' && error.code === 'claim_superseded') return new AgentError('claim_superseded', error.message, error.data);
  const retryAfter = error.kind === 'rate_limited' ? error.data?.['retry_after_seconds'] : undefined;
  return new AgentError('dependency_failed', error.message, {
    dependency_reason: error.code,
    dependency_status: error.status,
    ...(typeof retryAfter === 'number' ? { dependency_retry_after_seconds: retryAfter } : {}),
  });
}
