import { DENIALS } from '../denials.js';
import type { AccessToken } from './client-credentials.js';

/** How long a service that refused a new token gets no other one for its 401s (unless the token changes). */
export const RENEWAL_HOLD_MS = 30_000;

/**
 * Services that refused a token fresh from the issuer too (401 twice in a row): the service (its
 * clock, its keys, its audience), not the token, is then the likelier cause, and renewing on each
 * of its 401s would ask the issuer for a token (or two) per call. That token is kept (other
 * services accept it), and this service's 401s with it are passed on without a renewal for
 * RENEWAL_HOLD_MS, or until the token changes for another reason (its refresh, another service's
 * 401). Used by the egress listener (by target) and the service client (by origin).
 */
export class RenewalHolds {
  readonly #holds = new Map<string, { accessToken: string; until: number }>();

  /** Whether `service` refused this very token, fresh, less than RENEWAL_HOLD_MS ago. */
  refuses(service: string, token: AccessToken): boolean {
    const hold = this.#holds.get(service);
    return hold !== undefined && hold.accessToken === token.accessToken && performance.now() < hold.until;
  }

  /** Records that `service` refused a fresh token; drops the holds that have run out. */
  hold(service: string, token: AccessToken): void {
    const now = performance.now();
    for (const [key, hold] of this.#holds) if (hold.until <= now) this.#holds.delete(key);
    this.#holds.set(service, { accessToken: token.accessToken, until: now + RENEWAL_HOLD_MS });
  }
}

/** The JSON-RPC code of a sidecar's refusal of the token itself (authn.*: expired, revoked, unknown key, …). */
const TOKEN_REFUSED_RPC_CODE = DENIALS['authn.token_revoked'].rpcCode;

/** A 401 body longer than this is no sidecar's refusal (theirs are a few hundred bytes). */
export const MAX_TOKEN_REFUSAL_BYTES = 16 * 1024;

/**
 * Whether a 401's body is a target sidecar's refusal of the token (a JSON-RPC error with the
 * authn code): then nothing was forwarded, and the call may go again with a new token. The
 * target's agent answers through its sidecar unchanged, so a 401 of its own (an API behind it
 * that refused it, a framework's login check) may come after the call was served: sent again, a
 * call that is not idempotent would run twice, and a new token would not help anyway.
 */
export function refusedForToken(body: string): boolean {
  try {
    const message = JSON.parse(body) as { error?: { code?: unknown } } | null;
    return typeof message === 'object' && message !== null && message.error?.code === TOKEN_REFUSED_RPC_CODE;
  } catch {
    return false;
  }
}
