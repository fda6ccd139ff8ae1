/**
 * The closed set of refusals the sidecar can produce. Every code has exactly one row:
 * HTTP status, JSON-RPC error code, the audit `event_type`, and a short public message.
 * docs/errors.md lists the same codes; test/proxy/denials.test.ts keeps the two in step.
 */

/** Audit event types a refusal can be logged under. */
export type AuditEventType =
  | 'transport_rejected'
  | 'authentication_failure'
  | 'authorization'
  | 'validation_failure'
  | 'integrity_failure'
  | 'replay_detected'
  | 'rate_limited'
  | 'upstream_failure'
  | 'dependency_failure';

interface DenialRow {
  readonly status: number;
  readonly rpcCode: number;
  readonly event: AuditEventType;
  readonly message: string;
}

// JSON-RPC codes: the seed's (-32010 unauthorized, -32011 forbidden, -32012 too large) and the
// specification's (-32700 parse, -32600 invalid request, -32602 invalid params); the rest of the
// -320xx range is ours and stable once published in docs/errors.md.
export const DENIALS = {
  'transport.body_too_large': { status: 413, rpcCode: -32012, event: 'transport_rejected', message: 'request body too large' },
  'transport.unsupported_media_type': { status: 415, rpcCode: -32600, event: 'transport_rejected', message: 'Content-Type must be application/json' },
  'transport.bad_framing': { status: 400, rpcCode: -32600, event: 'transport_rejected', message: 'malformed HTTP framing' },
  'transport.bad_path': { status: 400, rpcCode: -32600, event: 'transport_rejected', message: 'request path is not acceptable' },
  'transport.method_not_allowed': { status: 405, rpcCode: -32600, event: 'transport_rejected', message: 'HTTP method not allowed on this path' },
  'transport.not_found': { status: 404, rpcCode: -32601, event: 'transport_rejected', message: 'no such endpoint' },
  'transport.timeout': { status: 408, rpcCode: -32600, event: 'transport_rejected', message: 'request not received in time' },
  'transport.expectation_failed': { status: 417, rpcCode: -32600, event: 'transport_rejected', message: 'Expect header not supported' },
  'transport.overloaded': { status: 503, rpcCode: -32019, event: 'transport_rejected', message: 'too many request bytes in flight, retry later' },

  'authn.token_missing': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'missing bearer token' },
  'authn.token_malformed': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'malformed token' },
  'authn.token_location': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token must be sent once, in the Authorization header' },
  'authn.alg_not_allowed': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token signing algorithm not allowed' },
  'authn.header_not_allowed': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token header carries a key reference that is never trusted' },
  'authn.unknown_key': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token signed by an unknown key' },
  'authn.bad_signature': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token signature invalid' },
  'authn.token_expired': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token expired' },
  'authn.claim_invalid': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token claim invalid' },
  'authn.token_revoked': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token revoked' },
  'authn.jwks_unavailable': { status: 401, rpcCode: -32013, event: 'dependency_failure', message: 'signing keys unavailable, cannot authenticate' },
  'authn.dpop_required': { status: 401, rpcCode: -32010, event: 'authentication_failure', message: 'token is bound to a key: use the DPoP scheme with a proof' },
  'revocation.not_loaded': { status: 503, rpcCode: -32018, event: 'dependency_failure', message: 'revocation list not loaded yet, cannot authenticate' },

  'integrity.proof_missing': { status: 401, rpcCode: -32014, event: 'integrity_failure', message: 'DPoP proof missing' },
  'integrity.proof_invalid': { status: 401, rpcCode: -32014, event: 'integrity_failure', message: 'DPoP proof invalid' },
  'integrity.proof_mismatch': { status: 401, rpcCode: -32014, event: 'integrity_failure', message: 'DPoP proof does not match this request' },
  'integrity.proof_stale': { status: 401, rpcCode: -32014, event: 'integrity_failure', message: 'DPoP proof outside its acceptance window' },
  'integrity.key_mismatch': { status: 401, rpcCode: -32014, event: 'integrity_failure', message: 'DPoP proof key does not match the token binding' },
  'integrity.digest_mismatch': { status: 400, rpcCode: -32015, event: 'integrity_failure', message: 'body does not match its digest' },
  'integrity.digest_missing': { status: 400, rpcCode: -32015, event: 'integrity_failure', message: 'Content-Digest header missing or malformed' },

  'replay.duplicate_id': { status: 409, rpcCode: -32016, event: 'replay_detected', message: 'request id already used' },
  'replay.store_unavailable': { status: 503, rpcCode: -32017, event: 'dependency_failure', message: 'replay protection unavailable' },

  'jsonrpc.parse_error': { status: 400, rpcCode: -32700, event: 'validation_failure', message: 'parse error' },
  'jsonrpc.invalid_request': { status: 400, rpcCode: -32600, event: 'validation_failure', message: 'invalid JSON-RPC request' },
  'jsonrpc.forbidden_key': { status: 400, rpcCode: -32600, event: 'validation_failure', message: 'forbidden object key' },
  'jsonrpc.duplicate_key': { status: 400, rpcCode: -32600, event: 'validation_failure', message: 'duplicate object key' },
  'jsonrpc.too_deep': { status: 400, rpcCode: -32600, event: 'validation_failure', message: 'JSON nested too deeply' },
  'jsonrpc.batch_too_large': { status: 400, rpcCode: -32600, event: 'validation_failure', message: 'batch too large' },

  'authz.no_roles': { status: 403, rpcCode: -32011, event: 'authorization', message: 'token carries no role this policy knows' },
  'authz.method_denied': { status: 403, rpcCode: -32011, event: 'authorization', message: 'method not allowed for these roles' },
  'authz.method_unknown': { status: 403, rpcCode: -32011, event: 'authorization', message: 'method not served here' },
  'authz.explicit_deny': { status: 403, rpcCode: -32011, event: 'authorization', message: 'method explicitly denied for a role' },
  'authz.tool_denied': { status: 403, rpcCode: -32011, event: 'authorization', message: 'tool not allowed for these roles' },
  'authz.arguments_denied': { status: 403, rpcCode: -32011, event: 'authorization', message: 'tool arguments not allowed for these roles' },
  'authz.egress_denied': { status: 403, rpcCode: -32011, event: 'authorization', message: 'this service may not call that target and method' },

  'params.invalid': { status: 400, rpcCode: -32602, event: 'validation_failure', message: 'invalid params' },

  'ratelimit.exceeded': { status: 429, rpcCode: -32029, event: 'rate_limited', message: 'rate limit exceeded' },

  'upstream.unavailable': { status: 502, rpcCode: -32050, event: 'upstream_failure', message: 'upstream unavailable' },
  'upstream.timeout': { status: 504, rpcCode: -32051, event: 'upstream_failure', message: 'upstream timed out' },
  'upstream.saturated': { status: 503, rpcCode: -32052, event: 'upstream_failure', message: 'upstream busy' },

  'internal.error': { status: 500, rpcCode: -32603, event: 'dependency_failure', message: 'internal error' },
} as const satisfies Record<string, DenialRow>;

/** A stable refusal code, e.g. `authn.token_expired`. Also the metric `reason` label. */
export type DenialCode = keyof typeof DENIALS;

/** What a layer returns to stop a request. `detail` is public (4xx only) and must hold no secrets. */
export interface Denial {
  readonly code: DenialCode;
  readonly detail?: string;
  /** Extra JSON-RPC `error.data` (e.g. failing schema paths, the batch element). */
  readonly data?: Record<string, unknown>;
  /** Extra response headers (Retry-After, RateLimit-*). */
  readonly headers?: Record<string, string>;
  /**
   * Why a dependency failed, for the audit line only (its `cause`), never on the wire: it may name
   * internal addresses (the issuer's discovery URL, a connection error) an anonymous caller must not see.
   */
  readonly cause?: string;
}

/** Builds a denial; the one way layers refuse. */
export function denial(code: DenialCode, detail?: string, extra?: Pick<Denial, 'data' | 'headers' | 'cause'>): Denial {
  return { code, detail, ...extra };
}

export function denialRow(code: DenialCode): DenialRow {
  return DENIALS[code];
}

export const DENIAL_CODES = Object.keys(DENIALS) as DenialCode[];
