import type { Revocation } from './revocation-set.js';
import { listMigrations, migrate } from './sql/migrate.js';
import type { SqlClient, SqlQueryable } from './sql/sql-client.js';
import { projectPath } from '../paths.js';

/** A revocation with who made it and why, as listed by the admin API. Times in epoch seconds. */
export interface RevocationRecord {
  readonly revocation: Revocation;
  readonly revokedAt: number;
  readonly revokedBy: string;
  readonly reason: string | undefined;
}

/** What {@link RevocationStore.add} kept. */
export interface AddResult {
  readonly created: boolean;
  /** The record as the store now holds it: what to answer, audit and push. */
  readonly record: RevocationRecord;
}

/**
 * The durable side of revocation: the source of truth every sidecar loads from at start, on a
 * Redis reconnect and on each safety resync. Failure policy: every method throws when the
 * backend cannot answer; a revocation is acknowledged only after `add` resolved.
 */
export interface RevocationStore {
  /**
   * Stores a revocation. `created` is false when one of the same jti was already in force: that
   * one keeps its own `revokedAt`, `revokedBy` and `reason` (the first request's), and is kept
   * until the later of the two expiries (revoking a token again never shortens its revocation);
   * `record` is then that kept record, with that expiry. One whose expiry had passed by
   * `record.revokedAt` (a row not yet deleted) counts as absent: it is replaced, record and all,
   * and `created` is true. The same on every backend.
   */
  add(record: RevocationRecord): Promise<AddResult>;
  /** Every revocation still in force at `nowSeconds`. */
  active(nowSeconds: number): Promise<Revocation[]>;
  /** The newest records still in force, for operators. */
  list(nowSeconds: number, limit: number): Promise<RevocationRecord[]>;
  /** Deletes rows whose tokens have all expired; resolves to how many. */
  deleteExpired(nowSeconds: number): Promise<number>;
  close(): Promise<void>;
}

/** Process-local store: the no-database mode of tests and single-process experiments. */
export class MemoryRevocationStore implements RevocationStore {
  readonly #records: RevocationRecord[] = [];

  async add(record: RevocationRecord): Promise<AddResult> {
    const r = record.revocation;
    if (r.kind === 'jti') {
      const known = this.#records.findIndex((x) => x.revocation.kind === 'jti' && x.revocation.jti === r.jti);
      const previous = this.#records[known];
      if (previous !== undefined && previous.revocation.expiresAt > record.revokedAt) {
        if (previous.revocation.expiresAt >= r.expiresAt) return { created: false, record: previous };
        const kept = { ...previous, revocation: r };
        this.#records[known] = kept;
        return { created: false, record: kept };
      }
      if (previous !== undefined) this.#records.splice(known, 1);
    }
    this.#records.push(record);
    return { created: true, record };
  }

  async active(nowSeconds: number): Promise<Revocation[]> {
    return this.#records.filter((x) => x.revocation.expiresAt > nowSeconds).map((x) => x.revocation);
  }

  async list(nowSeconds: number, limit: number): Promise<RevocationRecord[]> {
    return this.#records.filter((x) => x.revocation.expiresAt > nowSeconds).reverse().slice(0, limit);
  }

  async deleteExpired(nowSeconds: number): Promise<number> {
    const before = this.#records.length;
    const kept = this.#records.filter((x) => x.revocation.expiresAt > nowSeconds);
    this.#records.splice(0, this.#records.length, ...kept);
    return before - kept.length;
  }

  async close(): Promise<void> {}
}

export const REVOCATION_MIGRATIONS_DIR = projectPath('proxy/stores/migrations/');

interface Row {
  kind: 'jti' | 'subject' | 'before';
  id: string;
  /** The revocation's cut-off (subject, before); for a jti, when it was made. */
  revoked_at: number;
  /** When it was made. */
  recorded_at: number;
  revoked_by: string;
  reason: string | null;
  expires_at: number;
}

// One query for both tables, epochs as float8 so PGlite and pg return plain numbers. A rule
// written before migration 002 has no recorded_at: its cut-off stands in.
const SELECT_ACTIVE = `
  SELECT 'jti' AS kind, jti AS id, extract(epoch FROM revoked_at)::float8 AS revoked_at,
         extract(epoch FROM revoked_at)::float8 AS recorded_at, revoked_by, reason,
         extract(epoch FROM expires_at)::float8 AS expires_at
    FROM revoked_tokens WHERE expires_at > to_timestamp($1)
  UNION ALL
  SELECT kind, coalesce(subject, ''), extract(epoch FROM revoked_at)::float8,
         extract(epoch FROM coalesce(recorded_at, revoked_at))::float8, revoked_by, reason,
         extract(epoch FROM expires_at)::float8
    FROM revocation_rules WHERE expires_at > to_timestamp($1)`;

/** The migration set of the revocation tables in `schema_migrations`. */
export const REVOCATION_MIGRATION_SET = 'sidecar';

/**
 * The tables a sidecar reads (SELECT, nothing else): what `ca-a2a revoke migrate` grants a
 * read-only role. A migration adding a table the sidecar reads adds it here.
 */
export const REVOCATION_READ_TABLES = ['revoked_tokens', 'revocation_rules', 'schema_migrations'] as const;

/**
 * The revocation tables are not (all) there and this role may not create them: a sidecar on a
 * read-only role waits for the writer's migration. Its store is not loaded until then, so the
 * sidecar is not ready and refuses every request (fail closed).
 */
export class RevocationSchemaMissingError extends Error {
  readonly code = 'REVOCATION_SCHEMA_MISSING';

  constructor(pending: readonly number[], cause: unknown) {
    super(`the revocation tables are not migrated (set '${REVOCATION_MIGRATION_SET}' lacks version ${pending.join(', ')}) and this DATABASE_URL's role may not create them: `
      + "run 'ca-a2a revoke migrate' with the database owner's DATABASE_URL (in deploy/cdk, the admin task's revocations-migrate container does at each start)", { cause });
    this.name = 'RevocationSchemaMissingError';
  }
}

/** A write asked of a store whose role may only read. */
export class RevocationStoreReadOnlyError extends Error {
  readonly code = 'REVOCATION_STORE_READ_ONLY';

  constructor() {
    super("this DATABASE_URL's role may only read revocations: revoke through the admin API or 'ca-a2a revoke' (a sidecar whose policy sets anomaly.auto_revoke needs a role that may write)");
    this.name = 'RevocationStoreReadOnlyError';
  }
}

/** The revocation migrations not yet applied to the client's database (all of them when it has none). */
export async function pendingRevocationMigrations(client: SqlQueryable): Promise<number[]> {
  const files = await listMigrations(REVOCATION_MIGRATIONS_DIR);
  let applied: Set<number>;
  try {
    const rows = await client.query<{ version: number }>('SELECT version FROM schema_migrations WHERE set_name = $1', [REVOCATION_MIGRATION_SET]);
    applied = new Set(rows.rows.map((row) => Number(row.version)));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // 42501 insufficient_privilege: a reader role made by hand, without what migrate grants.
    if (code === '42501') {
      throw Object.assign(new Error("this DATABASE_URL's role may not read schema_migrations, so the sidecar cannot tell whether the revocation tables are current: grant it SELECT there ('ca-a2a revoke migrate' with CA_A2A_REVOCATIONS_READER_URL does)", { cause: error }), { code: 'REVOCATION_SCHEMA_UNREADABLE' });
    }
    // 42P01 undefined_table: a database nothing was ever migrated in.
    if (code !== '42P01') throw error;
    applied = new Set();
  }
  return files.map((file) => file.version).filter((version) => !applied.has(version));
}

/**
 * PostgreSQL (pg Pool) or PGlite, through the shared SqlClient. On first use the store checks
 * the schema: current, it only reads which writes its role may make; behind, it applies the
 * versioned migrations of set 'sidecar' (retried on the next call if the database was down, so a
 * sidecar started before PostgreSQL comes up converges without a restart). A role that may only
 * read (the sidecars' in deploy/cdk) therefore runs no DDL, fails with
 * {@link RevocationSchemaMissingError} while the schema is behind, never deletes expired rows (the
 * writer's `add` does) and refuses `add` with {@link RevocationStoreReadOnlyError}.
 */
export class SqlRevocationStore implements RevocationStore {
  readonly #client: SqlClient;
  readonly #ownsClient: boolean;
  #migrated: Promise<void> | undefined;
  #writable = false;

  constructor(client: SqlClient, options: { ownsClient: boolean }) {
    this.#client = client;
    this.#ownsClient = options.ownsClient;
  }

  #ready(): Promise<void> {
    this.#migrated ??= this.#prepare().then(() => undefined, (error: unknown) => {
      this.#migrated = undefined;
      throw error;
    });
    return this.#migrated;
  }

  async #prepare(): Promise<void> {
    // Checked before migrate(), whose first statement (CREATE TABLE IF NOT EXISTS) needs CREATE on
    // the schema even when the table exists: a read-only role would never get past it.
    const pending = await pendingRevocationMigrations(this.#client);
    if (pending.length > 0) {
      try {
        await migrate(this.#client, { set: REVOCATION_MIGRATION_SET, dir: REVOCATION_MIGRATIONS_DIR });
      } catch (error) {
        // 42501 insufficient_privilege: a role meant to read only.
        if ((error as { code?: unknown }).code === '42501') throw new RevocationSchemaMissingError(pending, error);
        throw error;
      }
    }
    const may = await this.#client.query<{ writable: boolean }>(
      `SELECT has_table_privilege('revoked_tokens', 'INSERT') AND has_table_privilege('revoked_tokens', 'DELETE')
          AND has_table_privilege('revocation_rules', 'INSERT') AND has_table_privilege('revocation_rules', 'DELETE') AS writable`,
    );
    this.#writable = may.rows[0]?.writable === true;
  }

  async add(record: RevocationRecord): Promise<AddResult> {
    await this.#ready();
    if (!this.#writable) throw new RevocationStoreReadOnlyError();
    const r = record.revocation;
    if (r.kind === 'jti') {
      // Rows already expired are gone first (so a jti whose revocation expired counts as absent).
      // Revoked again while in force: the row keeps its who, when and why, and the later expiry
      // (the row is always returned, so the one kept is known). xmax is 0 on the row version an
      // INSERT made.
      const res = await this.#client.transaction(async (tx) => {
        await deleteExpiredRows(tx, record.revokedAt);
        return tx.query<{ inserted: boolean; ours: boolean } & Pick<Row, 'revoked_at' | 'revoked_by' | 'reason' | 'expires_at'>>(
          `INSERT INTO revoked_tokens (jti, revoked_at, revoked_by, reason, expires_at)
           VALUES ($1, to_timestamp($2), $3, $4, to_timestamp($5))
           ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revoked_tokens.expires_at, EXCLUDED.expires_at)
           RETURNING xmax = 0 AS inserted, expires_at = to_timestamp($5) AS ours,
                     extract(epoch FROM revoked_at)::float8 AS revoked_at, revoked_by, reason,
                     extract(epoch FROM expires_at)::float8 AS expires_at`,
          [r.jti, record.revokedAt, record.revokedBy, record.reason ?? null, r.expiresAt],
        );
      });
      const row = res.rows[0];
      if (!row) throw new Error('revoked_tokens: the insert returned no row');
      if (row.inserted) return { created: true, record };
      // The times as asked where they are ours, so the answer and the push carry no rounding.
      const revocation = row.ours ? r : { ...r, expiresAt: Number(row.expires_at) };
      return { created: false, record: { revocation, revokedAt: Number(row.revoked_at), revokedBy: row.revoked_by, reason: row.reason ?? undefined } };
    }
    await this.#client.transaction(async (tx) => {
      await deleteExpiredRows(tx, record.revokedAt);
      await tx.query(
        `INSERT INTO revocation_rules (kind, subject, revoked_at, recorded_at, revoked_by, reason, expires_at)
         VALUES ($1, $2, to_timestamp($3), to_timestamp($4), $5, $6, to_timestamp($7))`,
        [r.kind, r.kind === 'subject' ? r.subject : null, r.revokedAt, record.revokedAt, record.revokedBy, record.reason ?? null, r.expiresAt],
      );
    });
    return { created: true, record };
  }

  async active(nowSeconds: number): Promise<Revocation[]> {
    await this.#ready();
    return (await this.#client.query<Row>(SELECT_ACTIVE, [nowSeconds])).rows.map((row) => toRecord(row).revocation);
  }

  async list(nowSeconds: number, limit: number): Promise<RevocationRecord[]> {
    await this.#ready();
    const rows = await this.#client.query<Row>(`${SELECT_ACTIVE} ORDER BY recorded_at DESC LIMIT $2`, [nowSeconds, limit]);
    return rows.rows.map(toRecord);
  }

  /** A role that may only read deletes nothing (resolves 0): expired rows are the writer's to delete. */
  async deleteExpired(nowSeconds: number): Promise<number> {
    await this.#ready();
    if (!this.#writable) return 0;
    return this.#client.transaction((tx) => deleteExpiredRows(tx, nowSeconds));
  }

  async close(): Promise<void> {
    if (this.#ownsClient) await this.#client.close();
  }
}

/**
 * Deletes the rows of both tables whose tokens have all expired; resolves to how many. Run by
 * every write too: sidecars on a read-only role never delete, so the writer keeps the tables to
 * what is in force (and what expired since the last revocation).
 */
async function deleteExpiredRows(tx: SqlQueryable, nowSeconds: number): Promise<number> {
  const tokens = await tx.query('DELETE FROM revoked_tokens WHERE expires_at <= to_timestamp($1) RETURNING 1', [nowSeconds]);
  const rules = await tx.query('DELETE FROM revocation_rules WHERE expires_at <= to_timestamp($1) RETURNING 1', [nowSeconds]);
  return tokens.rows.length + rules.rows.length;
}

function toRecord(row: Row): RevocationRecord {
  const expiresAt = Number(row.expires_at);
  const revokedAt = Number(row.revoked_at);
  const revocation: Revocation = row.kind === 'jti'
    ? { kind: 'jti', jti: row.id, expiresAt }
    : row.kind === 'subject'
      ? { kind: 'subject', subject: row.id, revokedAt, expiresAt }
      : { kind: 'before', revokedAt, expiresAt };
  return { revocation, revokedAt: Number(row.recorded_at), revokedBy: row.revoked_by, reason: row.reason ?? undefined };
}
