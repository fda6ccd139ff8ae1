import { TRANSIENT_NETWORK_CODES } from '../backends/object-store.js';
import { ToolError } from '../errors.js';
import { errorCode } from '../resilience.js';
import type { ToolDeps } from './tool-types.js';

// SQLSTATEs that say "the server or connection could not do it now", not "the request is wrong".
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01', '57014']);

// pg raises these without a code (pool and client-side timeouts, a socket closed under a query),
// so they are matched by message; each is a fixed string in pg / pg-pool.
const TRANSIENT_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'connection error',
  'Connection ended',
];

/** True for PostgreSQL errors worth retrying: connection failures, shutdowns, timeouts, serialisation. */
export function isPgTransient(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined) {
    return TRANSIENT_NETWORK_CODES.has(code) || code.startsWith('08') || TRANSIENT_SQLSTATES.has(code);
  }
  const message = err instanceof Error ? err.message : '';
  return TRANSIENT_MESSAGES.some((m) => message.includes(m));
}

/** Maps a permanent PostgreSQL error to a tool error; the detail stays in the server log. */
function mapPgError(err: unknown): unknown {
  switch (errorCode(err)) {
    case '23505':
      return new ToolError('conflict', 'a document with this id or s3_key already exists');
    case '23503':
      return new ToolError('not_found', 'no such document');
    case '23514':
    case '22P02':
    case '22003':
      return new ToolError('invalid_arguments', 'a value was refused by the database');
    default:
      return err;
  }
}

/** Runs one query under the PostgreSQL policy. */
export async function sqlQuery<T>(deps: ToolDeps, text: string, params: unknown[] = []): Promise<T[]> {
  try {
    return await deps.db.run(async () => (await deps.sql.query<T>(text, params)).rows);
  } catch (err) {
    throw mapPgError(err);
  }
}
