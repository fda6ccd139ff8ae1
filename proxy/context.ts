import type { IncomingMessage } from 'node:http';
import type { Denial } from './denials.js';
import type { EndpointPolicy, ServicePolicy } from './policy/model.js';
import { traceContext, type TraceContext } from './http/trace-context.js';

/** The verified caller, frozen once authentication passes. */
export interface Principal {
  readonly subject: string;
  readonly clientId: string;
  readonly roles: readonly string[];
  readonly jti: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** RFC 7638 thumbprint the token is bound to (cnf.jkt), if any. */
  readonly boundKeyThumbprint: string | undefined;
}

export type JsonRpcId = string | number | null;

/** One JSON-RPC call, as authorised and validated (a batch has several). */
export interface RpcCall {
  readonly index: number;
  readonly id: JsonRpcId | undefined;
  readonly method: string;
  readonly params: unknown;
  /** For tools/call (and /call_tool): the tool name and its arguments. */
  readonly tool: string | undefined;
  readonly toolArguments: unknown;
}

/**
 * Everything the layers know about one request. Layers read what earlier layers set and set
 * what they establish; no layer reads the raw request where the context has the answer.
 */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly policy: ServicePolicy;
  readonly requestId: string;
  /** The trace this request belongs to, continued from its `traceparent` or started here (ids from requestId). */
  readonly trace: TraceContext;
  readonly sourceIp: string;
  readonly startedAt: number;
  /**
   * The client behind a trusted proxy (`anomaly.trusted_proxies`), as that proxy named it in
   * X-Forwarded-For (set by transport); undefined when the peer is the client itself.
   */
  clientIp: string | undefined;
  /** Normalised path (set by transport). Decisions and forwarding use this, never req.url. */
  path: string;
  /** Raw query string including '?', or ''. Forwarded unchanged, never used for a decision. */
  query: string;
  endpoint: EndpointPolicy | undefined;
  isPublic: boolean;
  body: Buffer | undefined;
  /** Bytes of the body counted against the process's BodyBudget (set by transport, given back when the request ends). */
  bodyBytesHeld: number;
  token: string | undefined;
  tokenScheme: 'Bearer' | 'DPoP' | undefined;
  principal: Principal | undefined;
  calls: readonly RpcCall[];
  batch: boolean;
  /** The verified DPoP proof's jti, key thumbprint and iat in seconds (set by integrity, used by replay). */
  proof: { readonly jti: string; readonly thumbprint: string; readonly issuedAt: number } | undefined;
  /** Refusals recorded instead of enforced (mode: dry-run). */
  wouldDeny: Denial[];
  /** Headers the sidecar adds to the response (RateLimit-*). */
  responseHeaders: Record<string, string>;
  /**
   * Set by the forwarder when the agent's answer stopped after its status line was passed on
   * (the agent went away, or the next chunk did not come in time): what failed.
   */
  upstreamCutOff: string | undefined;
  /** Set when the client went away before the agent's status line was passed on (the forwarder), or before its body was read (bodyLayer). */
  clientLeft: boolean;
  /**
   * Sends `100 Continue` to a client that asked for it before sending its body, when the body is
   * about to be read (bodyLayer), so a caller refused before then is never invited; once only.
   */
  invite: (() => void) | undefined;
}

export function createContext(req: IncomingMessage, policy: ServicePolicy, requestId: string, sourceIp: string, startedAt: number): RequestContext {
  return {
    req, policy, requestId, trace: traceContext(req.headers, requestId), sourceIp, startedAt, clientIp: undefined,
    path: '', query: '', endpoint: undefined, isPublic: false, body: undefined, bodyBytesHeld: 0,
    token: undefined, tokenScheme: undefined, principal: undefined,
    calls: [], batch: false, proof: undefined, wouldDeny: [], responseHeaders: {}, upstreamCutOff: undefined, clientLeft: false, invite: undefined,
  };
}

/** The JSON-RPC id to answer a refusal with: the single call's id, else null. */
export function responseId(ctx: RequestContext): JsonRpcId {
  if (ctx.batch || ctx.calls.length !== 1) return null;
  return ctx.calls[0]?.id ?? null;
}

/** Stop checking and forward now (public routes only). */
export const FORWARD: unique symbol = Symbol('forward');

/** A layer's answer: pass (undefined), refuse (a Denial), or forward without further checks. */
export type Verdict = Denial | typeof FORWARD | undefined;

/** One step of the pipeline, built once per policy version. */
export interface Layer {
  readonly name: string;
  check(ctx: RequestContext): Verdict | Promise<Verdict>;
}
