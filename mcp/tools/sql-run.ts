import { TRANSIENT_NETWORK_CODES } from '../backends/object-store.js';
import { ToolError } from '../errors.js';
import { errorCode } from '../resilience.js';
import type { ToolDeps } from './tool-types.js';

// SQLSTATEs that say "the server or connection could not do it now", not "the request is wrong".
// 25006 (read_only_sql_transaction) is a write that reached a standby: after a failover, a pooled
// connection (or a DNS answer not yet expired) still leads to the demoted primary; the failed
// connection is discarded and the next try opens one that may reach the new primary.
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01', '57014', '25006']);

// pg raises these without a code (pool and client-side timeouts, a socket closed under a query),
// so they are matched by message; each is a fixed string in pg / pg-pool.
const TRANSIENT_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'connection error',
  'Connection ended',
];

// Failures that prove the statement did not run. A connection that could not be made (refused,
// no such host, the pool's or the client's connect timeout, the server refusing a new session)
// never carried it; serialization_failure and deadlock_detected roll it back; a read-only
// server refuses a write before running it. Anything else (a connection cut, a timeout) may come
// after the server committed it.
const UNSENT_CODES = new Set(['ECONNREFUSED', 'EAI_AGAIN', '57P03', '53300', '08004', '40001', '40P01', '25006']);
const UNSENT_MESSAGES = ['timeout exceeded when trying to connect', 'Connection terminated due to connection timeout'];

/** True for PostgreSQL errors worth retrying: connection failures, shutdowns, timeouts, serialisation. */
export function isPgTransient(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined) {
    return TRANSIENT_NETWORK_CODES.has(code) || code.startsWith('08') || TRANSIENT_SQLSTATES.has(code);
  }
  const message = err instanceof Error ? err.message : '';
  return TRANSIENT_MESSAGES.some((m) => message.includes(m));
}

/** True when a failed statement certainly did not run, so even a write may be sent again. */
export function isPgUnsent(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined) return UNSENT_CODES.has(code);
  const message = err instanceof Error ? err.message : '';
  return UNSENT_MESSAGES.some((m) => message.startsWith(m));
}

/** Maps a permanent PostgreSQL error to a tool error; the detail stays in the server log. */
function mapPgError(err: unknown): unknown {
  const code = errorCode(err);
  if (code === '23505') return new ToolError('conflict', 'a document with this id or s3_key already exists');
  if (code === '23503') return new ToolError('not_found', 'no such document');
  // Check violations and class 22 (data exception: a bad date, uuid or number, U+0000 in text or
  // jsonb…) are values the caller sent that the database refuses.
  if (code === '23514' || code?.startsWith('22')) return new ToolError('invalid_arguments', 'a value was refused by the database');
  return err;
}

/** How {@link sqlQuery} may repeat a statement. */
export interface SqlRunOptions {
  /**
   * True when running the statement twice has the effect of running it once (a SELECT), so a
   * failed try is repeated even when the statement may have run. Default false: only failures
   * that prove it did not run are retried, and a timed-out try is not.
   */
  idempotent?: boolean;
}

/**
 * Runs one query under the PostgreSQL policy. A try the policy gave up on (a timeout) is
 * cancelled on the server, and its connection returns to the pool once it has stopped.
 */
export async function sqlQuery<T>(deps: ToolDeps, text: string, params: unknown[] = [], options: SqlRunOptions = {}): Promise<T[]> {
  try {
    const run = async (signal: AbortSignal) => (await deps.sql.query<T>(text, params, { signal })).rows;
    return await deps.db.run(run, options.idempotent ? {} : { retryOn: isPgUnsent });
  } catch (err) {
    throw mapPgError(err);
  }
}
