import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { time } from '../admin-api/requests.js';
import { AuditLog } from '../observe/audit.js';
import { createLogger } from '../observe/logger.js';
import { openRevocationBackend, storeOptionsFromEnv } from '../stores/backends.js';
import { redisReady } from '../stores/redis.js';
import { Revoker, type RevokeRequest } from '../stores/revoker.js';
import { setUpRevocationDatabase } from '../stores/revocation-schema.js';
import { auditRevocation } from '../stores/sidecar-stores.js';
import { openSqlClient } from '../stores/sql/sql-client.js';

const HELP = `usage: ca-a2a revoke jti JTI --reason R [--expires-at ISO8601] [--by NAME]
       ca-a2a revoke subject SUB --reason R [--by NAME]
       ca-a2a revoke before ISO8601 --reason R [--by NAME]
       ca-a2a revoke migrate

  jti        one token (kept until --expires-at, the token's exp, else the max token lifetime;
             --expires-at is for jti only)
  subject    every token of that sub issued at or before now (logout)
  before     every token issued at or before the time (key rotation, incident)
  --by NAME  recorded as revoked_by (default: the OS user)
  migrate    creates or migrates the revocation tables in DATABASE_URL, whose role must be
             allowed to create them (the writer's: the admin API's); with
             CA_A2A_REVOCATIONS_READER_URL, also makes that URL's user a login role with that
             URL's password and SELECT on the tables sidecars read, nothing else: sidecars run
             on that URL, and one whose tables are not migrated is not ready (refuses every
             request) until this has run. Exit 0 when done, 1 when it could not be, 2 without
             DATABASE_URL.

Writes through the same code as the admin API. Exit 0 once the revocation is durable in
DATABASE_URL, then pushed to every sidecar through REDIS_URL. Exit 1 when it could not be
stored (nothing is applied), 2 on a usage error. Without DATABASE_URL: the embedded journal
CA_A2A_DATA_DIR/revocations.jsonl, which running sidecars on that directory watch and reload;
exit 1 if that directory (default ./.ca-a2a) does not exist, as no sidecar then reads it.
CA_A2A_KEY_PREFIX: the deployment's Redis key prefix (default ca-a2a), the same as its sidecars'.
On stderr: the token_revoked audit line and "request id: ID", the request_id that line carries.
`;

/** `ca-a2a revoke KIND VALUE --reason R`. */
export async function revokeCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        reason: { type: 'string' },
        by: { type: 'string' },
        'expires-at': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
  } catch (error) {
    return usage((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [kind, value, ...extra] = positionals;
  if (kind === 'migrate') {
    if (value !== undefined || values.reason !== undefined || values.by !== undefined || values['expires-at'] !== undefined) return usage('migrate takes no value and no option');
    return migrateCommand();
  }
  if (extra.length > 0 || value === undefined) return usage('give a kind (jti, subject, before) and one value');
  if (!values.reason) return usage('--reason is required');
  // A subject or before rule is kept for the longest token lifetime and has no expiry to give:
  // an --expires-at taken silently would let an operator think it shortened or lengthened it.
  if (kind !== 'jti' && values['expires-at'] !== undefined) return usage(`--expires-at applies to revoke jti only: a ${kind} revocation is kept for the longest token lifetime (24 h)`);
  // One id per invocation, as the admin API has one per request: its token_revoked line carries it.
  const asked = { reason: values.reason, revokedBy: values.by ?? osUser(), requestId: randomUUID() };
  let request: RevokeRequest;
  try {
    if (kind === 'jti') {
      const expiresAt = values['expires-at'] === undefined ? undefined : time(values['expires-at'], '--expires-at');
      request = { kind, jti: value, ...asked, ...(expiresAt === undefined ? {} : { expiresAt }) };
    } else if (kind === 'subject') {
      request = { kind, subject: value, ...asked };
    } else if (kind === 'before') {
      request = { kind, before: time(value, 'before'), ...asked };
    } else {
      return usage(`unknown kind '${kind}': use jti, subject or before`);
    }
  } catch (error) {
    return usage((error as Error).message);
  }

  const options = storeOptionsFromEnv();
  if (!options.databaseUrl) {
    // Every sidecar on a data directory has created it: a journal made here would be read by none,
    // as when DATABASE_URL is missing from the shell or the command runs in the wrong directory.
    if (!options.dataDir || !existsSync(options.dataDir)) {
      process.stderr.write(`ca-a2a revoke: DATABASE_URL is not set and ${options.dataDir} does not exist, so no sidecar keeps its revocations there: set DATABASE_URL (and REDIS_URL) to the deployment's stores, or CA_A2A_DATA_DIR to the running stack's data directory; nothing was revoked\n`);
      return 1;
    }
    process.stderr.write(`ca-a2a revoke: DATABASE_URL not set: using the embedded journal in ${options.dataDir}\n`);
  }
  let backend;
  try {
    backend = await openRevocationBackend(options, () => undefined, { max: 1, connectionTimeoutMs: 3_000 });
  } catch (error) {
    process.stderr.write(`ca-a2a revoke: cannot open the revocation store: ${describe(error)}; nothing was revoked\n`);
    return 1;
  }
  try {
    // The push needs a connected client (no offline queue); give Redis a moment, then go on without it.
    if (backend.redis) await redisReady(backend.redis, 2_000).catch(() => undefined);
    let pushError: unknown;
    // Every revocation's audit line, as the admin API writes it; on stderr, as stdout is the answer.
    const audit = new AuditLog(createLogger({ service: 'revoke', destination: pino.destination({ dest: 2, sync: true }) }));
    const revoker = new Revoker({
      store: backend.store,
      bus: backend.bus,
      onRevoked: (result) => auditRevocation(audit, result),
      onPushError: (error) => { pushError = error; },
    });
    let result;
    try {
      result = await revoker.revoke(request);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'INVALID_REVOCATION') return usage((error as Error).message);
      const where = options.databaseUrl ? `PostgreSQL (${redactUrl(options.databaseUrl)})` : `the embedded journal in ${options.dataDir}`;
      process.stderr.write(`ca-a2a revoke: could not store the revocation in ${where}: ${describe(error)}; nothing was revoked\n`);
      return 1;
    }
    const r = result.record.revocation;
    const what = r.kind === 'jti' ? `jti ${r.jti}` : r.kind === 'subject' ? `subject ${r.subject} (tokens issued at or before ${iso(r.revokedAt)})` : `every token issued at or before ${iso(r.revokedAt)}`;
    // A jti revoked already keeps its first record: say whose it is, not this request's.
    const kept = result.created ? '' : ` (already revoked by ${printable(result.record.revokedBy)} at ${iso(result.record.revokedAt)})`;
    process.stdout.write(`revoked ${what}${kept}; durable; kept until ${iso(r.expiresAt)}\n`);
    process.stderr.write(`ca-a2a revoke: request id: ${asked.requestId} (the request_id of its token_revoked audit line)\n`);
    if (!options.redisUrl && options.databaseUrl) {
      process.stderr.write('ca-a2a revoke: REDIS_URL not set: running sidecars of other processes apply it at their next resync (30 s)\n');
    } else if (!result.pushed && options.databaseUrl) {
      process.stderr.write(`ca-a2a revoke: durable, but the push through Redis failed (${describe(pushError)}): sidecars apply it at their next resync (30 s)\n`);
    } else if (!result.pushed) {
      process.stderr.write(`ca-a2a revoke: in the journal, but the push through Redis failed (${describe(pushError)}): only sidecars on ${options.dataDir} apply it; repeat it once Redis is back\n`);
    }
    return 0;
  } finally {
    await backend.close().catch(() => undefined);
  }
}

/** `ca-a2a revoke migrate`: the writer's schema, and the sidecars' read-only role. */
async function migrateCommand(): Promise<number> {
  const databaseUrl = process.env.DATABASE_URL || undefined;
  if (databaseUrl === undefined) return usage('migrate needs DATABASE_URL: the revocations database, as its owner');
  let sql;
  try {
    sql = await openSqlClient({ databaseUrl, pool: { min: 0, max: 1, connectionTimeoutMs: 10_000, applicationName: 'ca-a2a-migrate' } });
    const result = await setUpRevocationDatabase(sql, { readerUrl: process.env.CA_A2A_REVOCATIONS_READER_URL || undefined });
    const applied = result.applied.length === 0 ? 'revocation tables current' : `revocation migrations applied: ${result.applied.join(', ')}`;
    const reader = result.reader === undefined ? '' : `; read-only role ${result.reader.role} ${result.reader.created ? 'created' : 'updated'}`;
    process.stdout.write(`${applied}${reader} in ${redactUrl(databaseUrl)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`ca-a2a revoke migrate: ${describe(error)}\n`);
    return 1;
  } finally {
    await sql?.close().catch(() => undefined);
  }
}

function usage(message: string): number {
  process.stderr.write(`ca-a2a revoke: ${message}\n\n${HELP}`);
  return 2;
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'operator';
  }
}

// revoked_by is another operator's text (or an IdP's subject): no control character reaches the terminal.
function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, '\ufffd');
}

function iso(seconds: number): string {
  return new Date(Math.round(seconds * 1000)).toISOString();
}

/** A readable cause, also for Node's AggregateError (several addresses refused) whose message is empty. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const inner = (error as { errors?: unknown[] }).errors?.[0];
  const code = (error as { code?: unknown }).code;
  return error.message || (inner instanceof Error ? inner.message : '') || (typeof code === 'string' ? code : 'unknown error');
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.search = '';
    return parsed.toString();
  } catch {
    return 'DATABASE_URL';
  }
}
