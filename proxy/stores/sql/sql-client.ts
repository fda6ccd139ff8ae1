import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { lockDirectory } from './directory-lock.js';

/** Anything that runs one parameterised statement. */
export interface SqlQueryable {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
}

/** A transaction bound to one connection; `exec` runs a multi-statement script (migrations). */
export interface SqlTransaction extends SqlQueryable {
  exec(script: string): Promise<void>;
}

/** Options of one {@link SqlClient.query}. */
export interface SqlQueryOptions {
  /**
   * Aborting it gives up on the statement: on PostgreSQL the server is asked to cancel it
   * (pg_cancel_backend) and its connection returns to the pool only once it has stopped. PGlite
   * cannot cancel: a statement it has begun runs to the end.
   */
  signal?: AbortSignal;
}

/** Connection counts of the client; PGlite reports one connection that is never waited on. */
export interface SqlPoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/**
 * The one SQL abstraction shared by the MCP gateway and the sidecar's stores: a pg Pool against
 * PostgreSQL or an embedded PGlite database, behind the same calls.
 */
export interface SqlClient extends SqlQueryable {
  /** `postgres` for a pg Pool, `pglite` for the embedded database. */
  readonly kind: 'postgres' | 'pglite';
  query<T>(text: string, params?: unknown[], options?: SqlQueryOptions): Promise<{ rows: T[] }>;
  /** Runs `fn` inside BEGIN/COMMIT on one connection; rolls back when `fn` throws. */
  transaction<R>(fn: (tx: SqlTransaction) => Promise<R>): Promise<R>;
  stats(): SqlPoolStats;
  close(): Promise<void>;
}

/** Pool tuning for the PostgreSQL client; the defaults follow the seed (min 2, max 10). */
export interface SqlPoolOptions {
  min?: number;
  max?: number;
  connectionTimeoutMs?: number;
  statementTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Tag visible in pg_stat_activity.application_name. */
  applicationName?: string;
}

/** Options of {@link openSqlClient}: a `databaseUrl` selects PostgreSQL, else PGlite in `dataDir`. */
export interface OpenSqlClientOptions {
  databaseUrl?: string;
  dataDir?: string;
  pool?: SqlPoolOptions;
  /** Called for errors on idle pooled connections (the server went away); they are otherwise harmless. */
  onIdleError?: (err: Error) => void;
  /** Called when a statement given up on could not be cancelled; statement_timeout then ends it. */
  onCancelError?: (err: Error) => void;
}

/** The error of a statement pg's query_timeout gave up on: no answer came (pg 8 names it no other way). */
const PG_READ_TIMEOUT = 'Query read timeout';

/**
 * SQLSTATE classes of a statement the server refused on its own merits, after which its session
 * is as before (outside a transaction): 22 data exception, 23 integrity constraint violation, 40
 * transaction rollback (a serialization failure, a deadlock), 42 syntax error or access rule
 * violation, P0 a PL/pgSQL RAISE. Not 08 (connection), 25 (a read-only session: a demoted
 * primary, the next connection may reach the new one), 53 (resources), 57 (a cancel, a shutdown).
 */
const SESSION_INTACT_CLASSES = new Set(['22', '23', '40', '42', 'P0']);

function refusedByServer(failure: Error | undefined): boolean {
  const code = (failure as { code?: unknown } | undefined)?.code;
  return failure instanceof pg.DatabaseError && typeof code === 'string' && SESSION_INTACT_CLASSES.has(code.slice(0, 2));
}

/** Opens a pg Pool-backed client when `databaseUrl` is set, else a PGlite database under `dataDir`. */
export async function openSqlClient(options: OpenSqlClientOptions): Promise<SqlClient> {
  if (options.databaseUrl) return openPgClient(options.databaseUrl, options.pool ?? {}, options);
  if (!options.dataDir) throw new Error('openSqlClient needs databaseUrl or dataDir');
  return openPgliteClient(options.dataDir);
}

function openPgClient(url: string, opts: SqlPoolOptions, hooks: Pick<OpenSqlClientOptions, 'onIdleError' | 'onCancelError'>): SqlClient {
  // The connection string carries sslmode=require / options=…; pg parses both.
  const connection = {
    connectionString: url,
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 5_000,
    application_name: opts.applicationName ?? 'ca-a2a',
    // TCP keepalive after 10 s idle: a NAT or load balancer does not forget a pooled connection
    // that waits for work (their idle timeouts are minutes), and a dead peer is noticed by the
    // kernel rather than by the next statement.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
  const pool = new pg.Pool({
    ...connection,
    min: opts.min ?? 2,
    max: opts.max ?? 10,
    idleTimeoutMillis: opts.idleTimeoutMs ?? 30_000,
    statement_timeout: opts.statementTimeoutMs ?? 10_000,
    // Client-side guard too: statement_timeout cannot fire when the server is unreachable.
    query_timeout: (opts.statementTimeoutMs ?? 10_000) + 1_000,
  });
  // Without a listener an idle client's socket error would crash the process.
  pool.on('error', (err) => hooks.onIdleError?.(err));

  // A statement that got no answer at all, not even its statement_timeout error, went over a link
  // that died without closing (a NAT or load balancer that forgot it, a failover): its connection is
  // discarded, and so is every pooled one not heard from since, which went the same way. Reused
  // one after another, each would cost one more query_timeout. `heardIn` holds the generation in
  // which a connection last answered (or opened); a statement left unanswered starts a new one.
  let generation = 0;
  const heardIn = new WeakMap<object, number>();
  pool.on('connect', (client) => heardIn.set(client, generation));
  const unanswered = (err: unknown) => err instanceof Error && err.message === PG_READ_TIMEOUT;
  function heard(conn: pg.PoolClient, failure: unknown): void {
    if (unanswered(failure)) generation++;
    else heardIn.set(conn, generation);
  }
  async function checkout(): Promise<pg.PoolClient> {
    for (;;) {
      const conn = await pool.connect();
      if ((heardIn.get(conn) ?? generation) >= generation) return conn;
      conn.release(new Error('not heard from since a statement went unanswered'));
    }
  }

  // Asks the server to cancel what `conn` runs, from a connection of its own: the pool's may all
  // be busy. A closed client socket does not stop a running statement, so this is the only way.
  async function cancel(conn: pg.PoolClient): Promise<void> {
    // processID is the backend pid pg reads from BackendKeyData; @types/pg does not declare it.
    const pid = (conn as unknown as { processID?: number }).processID;
    if (pid === undefined) return;
    // Bounded like its login: a cancel whose connection went silent too would hold `conn`, which
    // is released only after it, for good.
    const canceller = new pg.Client({ ...connection, query_timeout: connection.connectionTimeoutMillis });
    canceller.on('error', () => undefined);
    try {
      await canceller.connect();
      await canceller.query('SELECT pg_cancel_backend($1)', [pid]);
    } catch (err) {
      hooks.onCancelError?.(err as Error);
    } finally {
      // Not awaited: a goodbye on a connection gone silent is never acknowledged.
      void canceller.end().catch(() => undefined);
    }
  }

  return {
    kind: 'postgres',
    async query<T>(text: string, params?: unknown[], options: SqlQueryOptions = {}) {
      const { signal } = options;
      signal?.throwIfAborted();
      const conn = await checkout();
      if (signal?.aborted) {
        conn.release();
        throw signal.reason;
      }
      let cancelled: Promise<void> | undefined;
      const onAbort = () => (cancelled = cancel(conn));
      signal?.addEventListener('abort', onAbort, { once: true });
      let failure: Error | undefined;
      // A checked-out client emits 'error' when its socket dies (the query rejects too); without
      // a listener that event would be an uncaught exception, as pool.query knows.
      const onConnError = (err: Error) => (failure ??= err);
      conn.on('error', onConnError);
      try {
        const res = await conn.query(text, params);
        return { rows: res.rows as T[] };
      } catch (err) {
        failure = err as Error;
        throw err;
      } finally {
        conn.off('error', onConnError);
        signal?.removeEventListener('abort', onAbort);
        // Released only after the cancel was delivered, so it cannot hit the connection's next statement.
        await cancelled;
        heard(conn, failure);
        // A statement the server refused for what it asked (a duplicate, a bad value, a missing
        // privilege) leaves its connection as it was: kept, or every caller sending bad values
        // would cost one more PostgreSQL login. Any other failure discards it, as pool.query does.
        conn.release(refusedByServer(failure) ? undefined : failure);
      }
    },
    async transaction<R>(fn: (tx: SqlTransaction) => Promise<R>): Promise<R> {
      const conn = await checkout();
      let broken: Error | undefined;
      // As in query: a checked-out connection whose socket dies emits 'error' (its statement
      // rejects too); unheard, that event is an uncaught exception that ends the process.
      const onConnError = (err: Error) => (broken ??= err);
      conn.on('error', onConnError);
      const run = async <T>(text: string, params?: unknown[]): Promise<{ rows: T[] }> => {
        try {
          const res = await conn.query(text, params);
          heard(conn, undefined);
          return { rows: res.rows as T[] };
        } catch (err) {
          heard(conn, err);
          // Unanswered, the connection is lost to the transaction: ROLLBACK would wait as long again.
          if (unanswered(err)) broken ??= err as Error;
          throw err;
        }
      };
      try {
        await run('BEGIN');
        const tx: SqlTransaction = {
          query: <T>(text: string, params?: unknown[]) => run<T>(text, params),
          async exec(script: string) {
            await run(script);
          },
        };
        const result = await fn(tx);
        await run('COMMIT');
        return result;
      } catch (err) {
        if (!broken) {
          await conn.query('ROLLBACK').catch((rollbackErr: Error) => {
            broken = rollbackErr;
          });
        }
        throw err;
      } finally {
        conn.off('error', onConnError);
        // A connection that could not roll back is discarded rather than reused mid-transaction.
        conn.release(broken);
      }
    },
    stats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    close: () => pool.end(),
  };
}

async function openPgliteClient(dataDir: string): Promise<SqlClient> {
  // 0700: PGlite writes its files 0666, so in a data directory others may enter (`--data-dir .`,
  // one made beforehand) any local user could otherwise rewrite the database.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockDirectory(resolve(dataDir));
  let db;
  try {
    // Loaded only here: a sidecar or a gateway on PostgreSQL never pays for PGlite's module.
    const { PGlite } = await import('@electric-sql/pglite');
    db = await PGlite.create(dataDir);
  } catch (err) {
    unlock();
    throw err;
  }
  let closed = false;
  return {
    kind: 'pglite',
    async query<T>(text: string, params?: unknown[], options: SqlQueryOptions = {}) {
      // PGlite runs a statement on this thread to its end (statement_timeout does not fire in
      // it either), so the signal can only keep one from starting.
      options.signal?.throwIfAborted();
      const res = await db.query<T>(text, params);
      return { rows: res.rows };
    },
    transaction<R>(fn: (tx: SqlTransaction) => Promise<R>): Promise<R> {
      return db.transaction((tx) =>
        fn({
          async query<T>(text: string, params?: unknown[]) {
            const res = await tx.query<T>(text, params);
            return { rows: res.rows };
          },
          async exec(script: string) {
            await tx.exec(script);
          },
        }),
      );
    },
    stats: () => ({ total: closed ? 0 : 1, idle: closed ? 0 : 1, waiting: 0 }),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}
