import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Layer, RequestContext, Verdict } from '../context.js';
import { denial, type Denial } from '../denials.js';
import { compileCidrs, normaliseIp, sourceAddress } from '../http/cidr.js';
import { clientGone } from '../http/connection-calls.js';
import { normaliseTarget } from '../http/path.js';
import type { ServicePolicy } from '../policy/model.js';

const CLOSE = { headers: { connection: 'close' } };
const OVERLOADED = { headers: { connection: 'close', 'retry-after': '1' } };

/**
 * The request bodies the process holds at once, summed over every request being read, checked or
 * forwarded (limits.max_buffered_body_bytes): max_body_bytes bounds one request, not the
 * max_client_connections that may each send one. One per process, across policy versions; the
 * sidecar gives a request's bytes back when it ends (RequestContext.bodyBytesHeld).
 */
export interface BodyBudget {
  held: number;
}

/** Whether a body of `bytes` would take the process past `policy`'s max_buffered_body_bytes. */
function overBudget(budget: BodyBudget, bytes: number, policy: ServicePolicy): boolean {
  return budget.held + bytes > policy.limits.maxBufferedBodyBytes;
}

/** The refusal of a body that does not fit the budget now: 503, retry in a second. */
const overloaded = (): Denial => denial('transport.overloaded', undefined, OVERLOADED);
/**
 * The most header fields a request may carry (Envoy's max_headers_count and Apache's
 * LimitRequestFields default to 100). Node keeps about the first thousand of a request's fields
 * and drops the rest unseen: past them the sidecar would decide without a second Host, a GET's
 * body or a second Content-Type, and an agent (a Node server too) would not see the x-ca-a2a-*
 * identity the sidecar appends after the client's fields. The listener keeps one more than this,
 * so that a request over it is seen to be over it.
 */
export const MAX_HEADER_FIELDS = 100;
const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/** Per policy version, its trusted proxies as a membership test, compiled once; false when it names none. */
const trustedProxies = new WeakMap<ServicePolicy, ((ip: string) => boolean) | false>();

/**
 * What every audit line of a request names beside its verdict: the client behind trusted proxies
 * (a load balancer; for the anomaly check too) and the normalised path. Set by the transport
 * layer, and before any refusal decided without it (an expectation not served, CONNECT), so that
 * a refusal's line carries the same fields whatever decided it. False when the path does not
 * normalise (ctx.path stays '').
 */
export function describeRequest(ctx: RequestContext): boolean {
  const policy = ctx.policy;
  let isTrusted = trustedProxies.get(policy);
  if (isTrusted === undefined) {
    isTrusted = policy.anomaly.trustedProxies.length > 0 && compileCidrs(policy.anomaly.trustedProxies);
    trustedProxies.set(policy, isTrusted);
  }
  const req = ctx.req;
  if (isTrusted !== false) {
    const client = sourceAddress(ctx.sourceIp, req.headers['x-forwarded-for'], isTrusted);
    if (client !== normaliseIp(ctx.sourceIp)) ctx.clientIp = client;
  }
  const target = normaliseTarget(req.url ?? '');
  if (!target) return false;
  ctx.path = target.path;
  ctx.query = target.query;
  return true;
}

/**
 * Layer 1, transport: the request must be well-framed, bounded and addressed by a normal path
 * before anything else looks at it. Node's parser already refuses most smuggling shapes (see
 * sidecar.ts clientError); these checks hold even if that ever changes. Decided on the head
 * alone: the body is read by bodyLayer, once the caller is known. Under `Expect: 100-continue`
 * its refusals come before the client is invited to send a body (RFC 9110 §10.1.1): the
 * invitation is bodyLayer's (RequestContext.invite).
 */
export function transportLayer(policy: ServicePolicy, budget: BodyBudget): Layer {
  return {
    name: 'transport',
    check(ctx: RequestContext): Verdict {
      if (!describeRequest(ctx)) return denial('transport.bad_path');
      return headRefusal(ctx.req, policy, budget);
    },
  };
}

/**
 * A client that sent `Expect: 100-continue` is invited to send its body when bodyLayer is about
 * to read it (once), so a request refused before then, by any layer, is never invited.
 */
export function inviteBody(ctx: RequestContext, res: ServerResponse): void {
  ctx.invite = () => {
    ctx.invite = undefined;
    if (!res.headersSent) res.writeContinue();
  };
}

/**
 * The body of a POST, read whole within limits.max_body_bytes and the process's budget. Inbound it
 * runs once the caller is authenticated and not revoked: a client with no valid token cannot make
 * the sidecar hold its bytes (and, sending `Expect: 100-continue`, is refused before it is invited
 * to send them, RequestContext.invite). GET and HEAD carry none (the transport layer refuses one that does).
 */
export function bodyLayer(policy: ServicePolicy, budget: BodyBudget): Layer {
  const maxBody = policy.limits.maxBodyBytes;
  return {
    name: 'body',
    async check(ctx: RequestContext): Promise<Verdict> {
      const req = ctx.req;
      if (req.method === 'GET' || req.method === 'HEAD') return undefined;
      // Gone while the caller was checked (closed, or its FIN sent): no answer can reach it, and
      // a body not read before its socket closed is dropped, and would never end.
      if (clientGone(req.socket)) {
        ctx.clientLeft = true;
        return denial('transport.bad_framing', 'the client left before its body was read', CLOSE);
      }
      ctx.invite?.();
      const body = await readBody(req, maxBody, budget, policy);
      if (body === 'too_large') return denial('transport.body_too_large', `limit is ${maxBody} bytes`, CLOSE);
      if (body === 'overloaded') return overloaded();
      if (body === 'aborted') return denial('transport.bad_framing', 'request body incomplete', CLOSE);
      ctx.body = body;
      ctx.bodyBytesHeld = body.length;
      return undefined;
    },
  };
}

/** The head's framing, method, type and declared length: everything but the path and the body. */
function headRefusal(req: IncomingMessage, policy: ServicePolicy, budget: BodyBudget): Denial | undefined {
  const framing = framingProblem(req);
  if (framing) return denial('transport.bad_framing', framing, CLOSE);

  const method = req.method ?? '';
  if (method === 'GET' || method === 'HEAD') {
    return hasBody(req) ? denial('transport.bad_framing', `${method} request with a body`, CLOSE) : undefined;
  }
  if (method !== 'POST') return denial('transport.method_not_allowed', undefined, { headers: { allow: 'GET, HEAD, POST' } });
  if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) return denial('transport.unsupported_media_type');
  const recoded = recodingProblem(req);
  if (recoded) return denial('transport.unsupported_media_type', recoded);

  const declared = req.headers['content-length'];
  const maxBody = policy.limits.maxBodyBytes;
  if (declared !== undefined && Number(declared) > maxBody) {
    return denial('transport.body_too_large', `limit is ${maxBody} bytes`, CLOSE);
  }
  // A declared length that cannot fit is refused before its body is read.
  if (declared !== undefined && overBudget(budget, Number(declared), policy)) return overloaded();
  return undefined;
}

function framingProblem(req: IncomingMessage): string | undefined {
  let contentLengths = 0;
  let transferEncodings = 0;
  let hosts = 0;
  const raw = req.rawHeaders;
  if (raw.length > 2 * MAX_HEADER_FIELDS) return `more than ${MAX_HEADER_FIELDS} header fields`;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'content-length') contentLengths++;
    else if (name === 'transfer-encoding') transferEncodings++;
    else if (name === 'host') hosts++;
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without a Host, or with more than one, gets a 400.
  if (hosts > 1 || (hosts === 0 && req.httpVersion === '1.1')) return 'an HTTP/1.1 request needs exactly one Host header';
  if (contentLengths > 1) return 'more than one Content-Length';
  if (contentLengths > 0 && transferEncodings > 0) return 'Content-Length with Transfer-Encoding';
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') return 'unsupported Transfer-Encoding';
  return undefined;
}

/**
 * Why an upstream could read the body otherwise than the sidecar does. Every later check (and
 * Content-Digest) is of the bytes received, forwarded unchanged: with a Content-Encoding, or a
 * second Content-Type (Node reads the first, the upstream gets both), an upstream that decodes
 * bodies would read other bytes, or another charset, than those checked.
 */
function recodingProblem(req: IncomingMessage): string | undefined {
  if (req.headers['content-encoding'] !== undefined) return 'no Content-Encoding: the body is checked as it comes';
  let types = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === 'content-type') types++;
  return types > 1 ? 'one Content-Type header' : undefined;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Reads the whole body, refusing past `limit` bytes without buffering more than that, and past
 * the process's budget. What it reads is counted in `budget.held`: kept there when it returns the
 * body (the sidecar gives it back when the request ends), given back at once otherwise.
 */
function readBody(req: IncomingMessage, limit: number, budget: BodyBudget, policy: ServicePolicy): Promise<Buffer | 'too_large' | 'overloaded' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | 'too_large' | 'overloaded' | 'aborted'): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onAborted);
      if (!Buffer.isBuffer(result)) budget.held -= size;
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      const refused = size + chunk.length > limit ? 'too_large' : overBudget(budget, chunk.length, policy) ? 'overloaded' : undefined;
      if (refused !== undefined) {
        req.pause();
        finish(refused);
        return;
      }
      size += chunk.length;
      budget.held += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    const onAborted = (): void => finish('aborted');
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onAborted);
  });
}
