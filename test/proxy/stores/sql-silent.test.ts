import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { openSqlClient, type SqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { PG_URL, TcpRelay } from '../../mcp/helpers.js';

// A NAT or load balancer that forgets a connection, or a failover, leaves it open and silent:
// nothing closes it, statements on it are never answered, while a new connection works.
describe('PostgreSQL connections gone silent without closing', () => {
  const through = (r: TcpRelay) => {
    const url = new URL(PG_URL);
    url.host = `127.0.0.1:${r.port}`;
    return url.toString();
  };
  /** A client through its own relay with `open` connections in its pool, all idle. */
  async function warmed(open: number): Promise<{ sql: SqlClient; relay: TcpRelay }> {
    const relay = new TcpRelay(Number(new URL(PG_URL).port || 5432));
    await relay.start();
    // query_timeout is statement_timeout + 1 s.
    const sql = await openSqlClient({ databaseUrl: through(relay), pool: { min: 0, max: open, statementTimeoutMs: 200 } });
    await Promise.all(Array.from({ length: open }, () => sql.query('SELECT pg_sleep(0.05)')));
    assert.equal(relay.accepted, open);
    assert.deepEqual(sql.stats(), { total: open, idle: open, waiting: 0 });
    return { sql, relay };
  }

  it('gives up on the pooled connections after the first unanswered statement: the next runs on a new one', async () => {
    const { sql, relay: own } = await warmed(3);
    try {
      own.freeze();
      await assert.rejects(sql.query('SELECT 1'), /Query read timeout/);
      // The two other idle connections went silent too: reused, each would time out in turn.
      const { rows } = await sql.query<{ n: number }>('SELECT 2 AS n');
      assert.deepEqual(rows, [{ n: 2 }]);
      assert.equal(own.accepted, 4);
      assert.deepEqual(sql.stats(), { total: 1, idle: 1, waiting: 0 });
    } finally {
      await sql.close();
      await own.stop();
    }
  });

  it('does the same after an unanswered statement in a transaction, without waiting on a ROLLBACK', async () => {
    const { sql, relay: own } = await warmed(2);
    try {
      own.freeze();
      await assert.rejects(sql.transaction((tx) => tx.query('SELECT 1')), /Query read timeout/);
      assert.equal(await sql.transaction(async (tx) => (await tx.query<{ n: number }>('SELECT 3 AS n')).rows[0]?.n), 3);
      assert.equal(own.accepted, 3);
    } finally {
      await sql.close();
      await own.stop();
    }
  });
});

describe('cancelling a statement on a connection gone silent', () => {
  it('gives up on a cancel whose own connection goes silent, and frees the pooled connection', { timeout: 60_000 }, async () => {
    const relay = new TcpRelay(Number(new URL(PG_URL).port || 5432));
    await relay.start();
    const url = new URL(PG_URL);
    url.host = `127.0.0.1:${relay.port}`;
    const cancelErrors: Error[] = [];
    // One connection: held by a cancel that never ends, the next statement could not run.
    const sql = await openSqlClient({
      databaseUrl: url.toString(),
      pool: { min: 0, max: 1, statementTimeoutMs: 200, connectionTimeoutMs: 1_000 },
      onCancelError: (err) => cancelErrors.push(err),
    });
    try {
      await sql.query('SELECT 1');
      relay.freeze();
      // The cancel's connection opens, then its pg_cancel_backend is never answered.
      relay.muteNext();
      const aborted = new AbortController();
      const first = sql.query('SELECT 1', [], { signal: aborted.signal });
      // Given up on once it runs: its connection checked out, the statement sent.
      while (sql.stats().idle > 0) await nextTurn();
      await nextTurn();
      aborted.abort(new Error('given up'));
      await assert.rejects(first, /Query read timeout/);
      assert.equal(cancelErrors.length, 1);
      assert.deepEqual((await sql.query<{ n: number }>('SELECT 4 AS n')).rows, [{ n: 4 }]);
      assert.equal(relay.accepted, 3);
    } finally {
      await sql.close();
      await relay.stop();
    }
  });
});

describe('pooled PostgreSQL connections waiting for work', () => {
  /** The kernel's timer state (/proc/net/tcp `tr`) of each established connection to `port`. */
  async function timersTo(port: number): Promise<string[]> {
    const table = await readFile('/proc/net/tcp', 'utf8');
    const remote = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    // Fields: sl, local, remote, state (01 established), tx:rx queues, tr:when, ...
    const rows = table.split('\n').slice(1).map((line) => line.trim().split(/\s+/));
    return rows.filter((f) => f[2]?.endsWith(remote) && f[3] === '01').map((f) => f[5]?.split(':')[0] ?? '');
  }

  it('have TCP keepalive on, so a NAT or load balancer does not forget them', { skip: process.platform !== 'linux' && 'reads the kernel timers in /proc/net/tcp, Linux only' }, async () => {
    const relay = new TcpRelay(Number(new URL(PG_URL).port || 5432));
    await relay.start();
    const url = new URL(PG_URL);
    url.host = `127.0.0.1:${relay.port}`;
    const sql = await openSqlClient({ databaseUrl: url.toString(), pool: { min: 0, max: 2 } });
    try {
      await Promise.all([sql.query('SELECT pg_sleep(0.05)'), sql.query('SELECT pg_sleep(0.05)')]);
      // Timer 2 is the keepalive timer; an idle connection without keepalive has none (0).
      assert.deepEqual(await timersTo(relay.port), ['02', '02']);
    } finally {
      await sql.close();
      await relay.stop();
    }
  });
});
