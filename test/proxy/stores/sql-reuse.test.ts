import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openSqlClient, type SqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { PG_URL } from '../../mcp/helpers.js';

const TABLE = `ca_a2a_reuse_probe_${process.pid}`;

// A statement the server refuses for what it asked leaves its session as it was: discarding the
// connection each time made every caller sending bad values cost one more PostgreSQL login.
describe('the PostgreSQL connection of a failed statement', () => {
  let sql: SqlClient;
  before(async () => {
    // One connection, so the next statement runs on the same one unless it was discarded.
    sql = await openSqlClient({ databaseUrl: PG_URL, pool: { min: 0, max: 1, statementTimeoutMs: 100 } });
    await sql.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY)`);
  });
  after(async () => {
    await sql.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await sql.close();
  });

  const backend = async (): Promise<number> => (await sql.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? -1;
  const code = (sqlState: string) => (error: unknown) => (error as { code?: unknown }).code === sqlState;

  for (const [name, statement, sqlState] of [
    ['a data exception', 'SELECT 1 / 0', '22012'],
    ['a unique violation', `INSERT INTO ${TABLE} VALUES (1), (1)`, '23505'],
    ['an unknown table', 'SELECT * FROM ca_a2a_no_such_table', '42P01'],
    ['a RAISE', "DO $$ BEGIN RAISE EXCEPTION 'refused'; END $$", 'P0001'],
  ] as const) {
    it(`is kept after ${name} (${sqlState})`, async () => {
      const pid = await backend();
      await assert.rejects(sql.query(statement), code(sqlState));
      assert.equal(await backend(), pid, 'the same session answers the next statement');
    });
  }

  it('is discarded after a statement cancelled by statement_timeout (57014)', async () => {
    const pid = await backend();
    await assert.rejects(sql.query('SELECT pg_sleep(2)'), code('57014'));
    assert.notEqual(await backend(), pid, 'a new session');
  });

  it('is discarded after its session was terminated (57P01)', async () => {
    const pid = await backend();
    await assert.rejects(sql.query('SELECT pg_terminate_backend(pg_backend_pid())'));
    assert.notEqual(await backend(), pid, 'a new session');
  });
});
