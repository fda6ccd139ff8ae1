import type { Revocation } from './revocation-set.js';
import { migrate } from './sql/migrate.js';
import type { SqlClient } from './sql/sql-client.js';
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

/**
 * PostgreSQL (pg Pool) or PGlite, through the shared SqlClient. The schema is created by the
 * versioned migrations of set 'sidecar' on first use, retried on the next call if the database
 * was down, so a sidecar started before PostgreSQL comes up converges without a restart.
 */
export class SqlRevocationStore implements RevocationStore {
  readonly #client: SqlClient;
  readonly #ownsClient: boolean;
  #migrated: Promise<void> | undefined;

  constructor(client: SqlClient, options: { ownsClient: boolean }) {
    this.#client = client;
    this.#ownsClient = options.ownsClient;
  }

  #ready(): Promise<void> {
    this.#migrated ??= migrate(this.#client, { set: 'sidecar', dir: REVOCATION_MIGRATIONS_DIR }).then(() => undefined, (error: unknown) => {
      this.#migrated = undefined;
      throw error;
    });
    return this.#migrated;
  }

  async add(record: RevocationRecord): Promise<AddResult> {
    await this.#ready();
    const r = record.revocation;
    if (r.kind === 'jti') {
      // A row already expired (deleteExpired has not run yet) is gone first, so it counts as absent.
      // Revoked again while in force: the row keeps its who, when and why, and the later expiry
      // (the row is always returned, so the one kept is known). xmax is 0 on the row version an
      // INSERT made.
      const res = await this.#client.transaction(async (tx) => {
        await tx.query('DELETE FROM revoked_tokens WHERE jti = $1 AND expires_at <= to_timestamp($2)', [r.jti, record.revokedAt]);
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
    await this.#client.query(
      `INSERT INTO revocation_rules (kind, subject, revoked_at, recorded_at, revoked_by, reason, expires_at)
       VALUES ($1, $2, to_timestamp($3), to_timestamp($4), $5, $6, to_timestamp($7))`,
      [r.kind, r.kind === 'subject' ? r.subject : null, r.revokedAt, record.revokedAt, record.revokedBy, record.reason ?? null, r.expiresAt],
    );
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

  async deleteExpired(nowSeconds: number): Promise<number> {
    await this.#ready();
    return this.#client.transaction(async (tx) => {
      const tokens = await tx.query('DELETE FROM revoked_tokens WHERE expires_at <= to_timestamp($1) RETURNING 1', [nowSeconds]);
      const rules = await tx.query('DELETE FROM revocation_rules WHERE expires_at <= to_timestamp($1) RETURNING 1', [nowSeconds]);
      return tokens.rows.length + rules.rows.length;
    });
  }

  async close(): Promise<void> {
    if (this.#ownsClient) await this.#client.close();
  }
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
