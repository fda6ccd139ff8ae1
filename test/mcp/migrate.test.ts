import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../../proxy/stores/sql/migrate.js';
import { openSqlClient } from '../../proxy/stores/sql/sql-client.js';
import type { SqlClient } from '../../proxy/stores/sql/sql-client.js';
import { createTestSchema, tempDir, waitingOnLock } from './helpers.js';

const HELD_LOCK = 914_273;

describe('versioned migrations (proxy/stores/sql/migrate.ts)', () => {
  let dir: string;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  const clients: SqlClient[] = [];
  const open = async () => {
    const c = await openSqlClient({ databaseUrl: schema.urlFor(), pool: { max: 2 } });
    clients.push(c);
    return c;
  };

  before(async () => {
    schema = await createTestSchema();
    dir = await tempDir();
    await mkdir(join(dir, 'good'));
    await writeFile(join(dir, 'good', '001_create.sql'), 'CREATE TABLE things (id int PRIMARY KEY);\nCREATE INDEX things_id ON things (id);');
    await writeFile(join(dir, 'good', '002_seed.sql'), 'INSERT INTO things VALUES (1);');
    await writeFile(join(dir, 'good', 'README.md'), 'not a migration');
    await mkdir(join(dir, 'race'));
    await writeFile(join(dir, 'race', '001_create.sql'), 'CREATE TABLE raced (id int PRIMARY KEY);');
    await writeFile(join(dir, 'race', '002_seed.sql'), 'INSERT INTO raced VALUES (1);');
    await mkdir(join(dir, 'bad'));
    await writeFile(join(dir, 'bad', '001_ok.sql'), 'CREATE TABLE half (id int);');
    await writeFile(join(dir, 'bad', '002_broken.sql'), 'CREATE TABLE nope (;');
    await mkdir(join(dir, 'held'));
    // Waits for an advisory lock the test holds: the run stops with schema_migrations created and uncommitted.
    await writeFile(join(dir, 'held', '001_wait.sql'), `SELECT pg_advisory_xact_lock(${HELD_LOCK});`);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await schema.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects a transaction whose connection is killed mid-way, without an uncaught exception, and serves the next one', async () => {
    const c = await open();
    const admin = new pg.Client({ connectionString: schema.urlFor() });
    await admin.connect();
    try {
      await assert.rejects(c.transaction(async (tx) => {
        const [row] = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
        await admin.query('SELECT pg_terminate_backend($1)', [row?.pid]);
        await tx.query('SELECT 1');
      }), /terminat|connection error/i);
    } finally {
      await admin.end();
    }
    assert.deepEqual(await c.transaction(async (tx) => (await tx.query<{ one: number }>('SELECT 1 AS one')).rows), [{ one: 1 }]);
  });

  it('applies NNN_name.sql files in order, once, and records them per set', async () => {
    const c = await open();
    assert.deepEqual(await migrate(c, { set: 'things', dir: join(dir, 'good') }), [1, 2]);
    assert.deepEqual(await migrate(c, { set: 'things', dir: join(dir, 'good') }), []);
    const rows = (await c.query<{ set_name: string; version: number; name: string }>('SELECT set_name, version, name FROM schema_migrations WHERE set_name = $1 ORDER BY version', ['things'])).rows;
    assert.deepEqual(rows.map((r) => [r.set_name, r.version, r.name]), [['things', 1, 'create'], ['things', 2, 'seed']]);
    assert.deepEqual((await c.query<{ n: number }>('SELECT count(*)::int AS n FROM things')).rows[0]?.n, 1);
  });

  it('serialises concurrent runs of one set across clients: each file applied exactly once', async () => {
    const [a, b, c] = await Promise.all([open(), open(), open()]);
    const applied = await Promise.all([a, b, c].map((x) => migrate(x, { set: 'race', dir: join(dir, 'race') })));
    assert.deepEqual(applied.filter((v) => v.length > 0), [[1, 2]]);
    assert.equal((await a.query<{ n: number }>('SELECT count(*)::int AS n FROM raced')).rows[0]?.n, 1);
  });

  it('runs two sets at once on a fresh database: the second waits for the first, neither fails', async () => {
    // The sidecar (set sidecar) and the gateway (set mcp) starting together on a new database.
    const fresh = await createTestSchema();
    const app = `ca-a2a-migrate-${randomBytes(4).toString('hex')}`;
    const holder = new pg.Client({ connectionString: fresh.urlFor() });
    await holder.connect();
    const clients = await Promise.all(['a', 'b'].map((tag) => openSqlClient({ databaseUrl: fresh.urlFor(), pool: { max: 1, applicationName: `${app}-${tag}` } })));
    const waiting = (tag: string) => waitingOnLock(holder, `${app}-${tag}`);
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [HELD_LOCK]);
      const first = migrate(clients[0] as SqlClient, { set: 'held', dir: join(dir, 'held') });
      await waiting('a');
      const second = migrate(clients[1] as SqlClient, { set: 'things', dir: join(dir, 'good') });
      await waiting('b');
      await holder.query('SELECT pg_advisory_unlock($1)', [HELD_LOCK]);
      const [a, b] = await Promise.allSettled([first, second]);
      assert.deepEqual(a, { status: 'fulfilled', value: [1] });
      assert.deepEqual(b, { status: 'fulfilled', value: [1, 2] });
    } finally {
      for (const c of clients) await c.close();
      await holder.end();
      await fresh.drop();
    }
  });

  it('rolls a failing run back completely', async () => {
    const c = await open();
    await assert.rejects(migrate(c, { set: 'bad', dir: join(dir, 'bad') }));
    const recorded = await c.query('SELECT 1 FROM schema_migrations WHERE set_name = $1', ['bad']);
    assert.equal(recorded.rows.length, 0);
    const table = await c.query(`SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'half'`, [schema.schema]);
    assert.equal(table.rows.length, 0);
  });

  it('runs the same way on embedded PGlite', async () => {
    const dataDir = await tempDir();
    const c = await openSqlClient({ dataDir });
    try {
      assert.deepEqual(await migrate(c, { set: 'things', dir: join(dir, 'good') }), [1, 2]);
      assert.deepEqual(await migrate(c, { set: 'things', dir: join(dir, 'good') }), []);
      assert.equal(c.kind, 'pglite');
    } finally {
      await c.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
