import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { scramVerifier, setUpRevocationDatabase } from '../../../proxy/stores/revocation-schema.js';
import { RevocationSet } from '../../../proxy/stores/revocation-set.js';
import { SqlRevocationStore } from '../../../proxy/stores/revocation-store.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';
import { openSqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { PG_URL } from '../../mcp/helpers.js';
import { createTestSchema, readOnlyRevocationRole, until } from '../shared-state/helpers.js';

const BIN = fileURLToPath(new URL('../../../bin/ca-a2a.js', import.meta.url));

async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = [], url = PG_URL): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

function migrateCli(env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'revoke', 'migrate'], { env: { ...process.env, ...env }, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/**
 * A schema of its own and a read-only role name of its own (nothing made yet), both dropped after.
 * `readerUrl` connects as that role to that schema.
 */
async function readerWorld(cleanup: Array<() => Promise<void>>) {
  const schema = await createTestSchema();
  const reader = await readOnlyRevocationRole(schema.urlFor(), { setUp: false });
  cleanup.push(async () => {
    await schema.drop();
    await reader.drop();
  });
  return { schema, role: reader.role, password: reader.password, ownerUrl: schema.urlFor(), readerUrl: reader.readerUrl };
}

const DAY = 86_400;
const now = (): number => Date.now() / 1000;

describe('sidecars on a read-only revocations role', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('a sidecar on a role with only SELECT loads what the writer revoked, runs no DDL, and neither writes nor deletes', async () => {
    const w = await readerWorld(cleanup);
    const owner = await openSqlClient({ databaseUrl: w.ownerUrl, pool: { max: 1 } });
    cleanup.push(() => owner.close());
    const setup = await setUpRevocationDatabase(owner, { readerUrl: w.readerUrl });
    assert.deepEqual(setup.applied, [1, 2]);
    assert.deepEqual(setup.reader, { role: w.role, created: true });
    const writer = new SqlRevocationStore(owner, { ownsClient: false });
    await writer.add({ revocation: { kind: 'jti', jti: 'stolen', expiresAt: now() + DAY }, revokedAt: now(), revokedBy: 'ops', reason: 'r' });
    await writer.add({ revocation: { kind: 'subject', subject: 'bob', revokedAt: now(), expiresAt: now() + DAY }, revokedAt: now(), revokedBy: 'ops', reason: 'r' });
    await sql("INSERT INTO revoked_tokens (jti, revoked_by, expires_at) VALUES ('old', 'ops', now() - interval '1 hour')", [], w.ownerUrl);

    // Exactly SELECT on the three tables, nothing else on any table.
    const grants = await sql<{ table_name: string; privilege_type: string }>(
      'SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 ORDER BY table_name', [w.role]);
    assert.deepEqual(grants.map((g) => `${g.table_name}:${g.privilege_type}`), ['revocation_rules:SELECT', 'revoked_tokens:SELECT', 'schema_migrations:SELECT']);

    const backend = await openRevocationBackend({ databaseUrl: w.readerUrl }, () => undefined);
    cleanup.push(() => backend.close());
    const set = new RevocationSet({ loaded: false });
    const errors: unknown[] = [];
    const sync = new RevocationSync({ set, store: backend.store, bus: backend.bus, cleanupIntervalMs: 0, resyncIntervalMs: 60_000, onError: (error) => errors.push(error) });
    cleanup.push(() => sync.close());
    await sync.start();
    assert.deepEqual(errors, []);
    assert.equal(set.loaded, true);
    assert.deepEqual((await backend.store.active(now())).map((r) => r.kind).sort(), ['jti', 'subject']);

    await assert.rejects(backend.store.add({ revocation: { kind: 'jti', jti: 'x', expiresAt: now() + 60 }, revokedAt: now(), revokedBy: 'sidecar:x', reason: 'r' }), { code: 'REVOCATION_STORE_READ_ONLY' });
    assert.equal(await backend.store.deleteExpired(now()), 0);
    assert.equal((await sql("SELECT 1 FROM revoked_tokens WHERE jti = 'old'", [], w.ownerUrl)).length, 1, 'the expired row is the writer\'s to delete');
    // And the database agrees: the role itself cannot write or create.
    await assert.rejects(sql("INSERT INTO revoked_tokens (jti, revoked_by, expires_at) VALUES ('y', 'x', now())", [], w.readerUrl), { code: '42501' });
    await assert.rejects(sql('DELETE FROM revocation_rules', [], w.readerUrl), { code: '42501' });
    await assert.rejects(sql('CREATE TABLE t (x int)', [], w.readerUrl), { code: '42501' });

    // A reader role made by hand without SELECT on schema_migrations is told what it lacks.
    await sql(`REVOKE SELECT ON schema_migrations FROM ${pg.escapeIdentifier(w.role)}`, [], w.ownerUrl);
    const handMade = await openRevocationBackend({ databaseUrl: w.readerUrl }, () => undefined);
    cleanup.push(() => handMade.close());
    await assert.rejects(handMade.store.active(now()), (error: Error & { code?: string }) => error.code === 'REVOCATION_SCHEMA_UNREADABLE' && /grant it SELECT there/.test(error.message));

    // The writer's next revocation deletes the expired row.
    await writer.add({ revocation: { kind: 'before', revokedAt: now() - 60, expiresAt: now() + DAY }, revokedAt: now(), revokedBy: 'ops', reason: 'r' });
    assert.equal((await sql("SELECT 1 FROM revoked_tokens WHERE jti = 'old'", [], w.ownerUrl)).length, 0);
  });

  it('before the writer migrated, a sidecar on that role is not loaded (so refuses) and says to run ca-a2a revoke migrate; it loads once that ran, without a restart', async () => {
    const w = await readerWorld(cleanup);
    await sql(`CREATE ROLE ${pg.escapeIdentifier(w.role)} LOGIN`);
    await sql(`GRANT USAGE ON SCHEMA ${pg.escapeIdentifier(w.schema.schema)} TO ${pg.escapeIdentifier(w.role)}`);
    const backend = await openRevocationBackend({ databaseUrl: w.readerUrl }, () => undefined);
    cleanup.push(() => backend.close());
    const set = new RevocationSet({ loaded: false });
    const errors: Error[] = [];
    const sync = new RevocationSync({ set, store: backend.store, bus: backend.bus, cleanupIntervalMs: 0, retryMs: 20, resyncIntervalMs: 60_000, onError: (error) => errors.push(error as Error) });
    cleanup.push(() => sync.close());
    await sync.start();
    assert.equal(set.loaded, false);
    assert.equal((errors[0] as { code?: string }).code, 'REVOCATION_SCHEMA_MISSING');
    assert.match(errors[0]?.message ?? '', /lacks version 1, 2\).*ca-a2a revoke migrate/);
    assert.equal((await sql('SELECT 1 FROM information_schema.tables WHERE table_schema = $1', [w.schema.schema])).length, 0, 'the sidecar created nothing');

    const res = await migrateCli({ DATABASE_URL: w.ownerUrl, CA_A2A_REVOCATIONS_READER_URL: w.readerUrl });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`revocation migrations applied: 1, 2; read-only role ${w.role} updated`));
    assert.doesNotMatch(res.stdout + res.stderr, new RegExp(w.password));
    await until(async () => set.loaded);
  });

  it('ca-a2a revoke migrate sets the URL\'s password as a SCRAM verifier, again at every run, and takes back any other grant', async () => {
    const w = await readerWorld(cleanup);
    const env = { DATABASE_URL: w.ownerUrl, CA_A2A_REVOCATIONS_READER_URL: w.readerUrl };
    const first = await migrateCli(env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`read-only role ${w.role} created`));
    await sql(`GRANT INSERT, DELETE ON revoked_tokens TO ${pg.escapeIdentifier(w.role)}`, [], w.ownerUrl);
    const changed = new URL(w.readerUrl);
    changed.password = randomBytes(24).toString('hex');
    const second = await migrateCli({ ...env, CA_A2A_REVOCATIONS_READER_URL: changed.toString() });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /revocation tables current; read-only role .* updated/);
    const [row] = await sql<{ rolpassword: string; rolsuper: boolean; rolcreaterole: boolean }>('SELECT rolpassword, rolsuper, rolcreaterole FROM pg_authid WHERE rolname = $1', [w.role]);
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(row?.rolpassword ?? '');
    assert.ok(m?.[1] && m[2], row?.rolpassword);
    assert.equal(row?.rolpassword, scramVerifier(changed.password, Buffer.from(m[2], 'base64'), Number(m[1])));
    assert.equal(row?.rolsuper, false);
    assert.equal(row?.rolcreaterole, false);
    const grants = await sql<{ privilege_type: string }>("SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 AND table_name = 'revoked_tokens'", [w.role]);
    assert.deepEqual(grants.map((g) => g.privilege_type), ['SELECT']);
  });

  it('ca-a2a revoke migrate works as an owner that is no superuser (as RDS\'s master user), again at the next start, and refuses a reader holding a role attribute', async () => {
    const w = await readerWorld(cleanup);
    const owner = `ca_a2a_test_owner_${randomBytes(5).toString('hex')}`;
    await sql(`CREATE ROLE ${pg.escapeIdentifier(owner)} LOGIN CREATEROLE CREATEDB`);
    cleanup.push(async () => {
      await sql(`DROP OWNED BY ${pg.escapeIdentifier(owner)}`);
      await sql(`DROP ROLE ${pg.escapeIdentifier(owner)}`);
    });
    await sql(`ALTER SCHEMA ${pg.escapeIdentifier(w.schema.schema)} OWNER TO ${pg.escapeIdentifier(owner)}`);
    await sql(`GRANT CONNECT ON DATABASE test TO ${pg.escapeIdentifier(owner)} WITH GRANT OPTION`);
    const ownerUrl = new URL(w.ownerUrl);
    ownerUrl.username = owner;
    const env = { DATABASE_URL: ownerUrl.toString(), CA_A2A_REVOCATIONS_READER_URL: w.readerUrl };
    const first = await migrateCli(env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /created/);
    // The next admin task's start: the role exists, its password is set again.
    const second = await migrateCli(env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /updated/);
    const backend = await openRevocationBackend({ databaseUrl: w.readerUrl }, () => undefined);
    cleanup.push(() => backend.close());
    assert.deepEqual(await backend.store.active(now()), []);
    await sql(`ALTER ROLE ${pg.escapeIdentifier(w.role)} CREATEDB`);
    const refused = await migrateCli(env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /has CREATEDB: not a read-only role/);
  });

  it('computes the verifier PostgreSQL computes for the same password and salt', async () => {
    const w = await readerWorld(cleanup);
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query("SET password_encryption = 'scram-sha-256'");
      await client.query(`CREATE ROLE ${pg.escapeIdentifier(w.role)} PASSWORD ${pg.escapeLiteral(w.password)}`);
      const stored = (await client.query<{ rolpassword: string }>('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [w.role])).rows[0]?.rolpassword ?? '';
      const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$/.exec(stored);
      assert.ok(m?.[1] && m[2], stored);
      assert.equal(scramVerifier(w.password, Buffer.from(m[2], 'base64'), Number(m[1])), stored);
    } finally {
      await client.end();
    }
  });

  it('ca-a2a revoke migrate refuses a reader URL naming the owner, or a role that is a member of another; exit 2 without DATABASE_URL', async () => {
    const w = await readerWorld(cleanup);
    const owner = new URL(w.readerUrl);
    owner.username = 'postgres';
    const same = await migrateCli({ DATABASE_URL: w.ownerUrl, CA_A2A_REVOCATIONS_READER_URL: owner.toString() });
    assert.equal(same.code, 1);
    assert.match(same.stderr, /names the owner's own role 'postgres'/);
    await sql(`CREATE ROLE ${pg.escapeIdentifier(w.role)} LOGIN IN ROLE pg_write_all_data`);
    const member = await migrateCli({ DATABASE_URL: w.ownerUrl, CA_A2A_REVOCATIONS_READER_URL: w.readerUrl });
    assert.equal(member.code, 1);
    assert.match(member.stderr, /is a member of pg_write_all_data: not a read-only role/);
    const { DATABASE_URL: _, ...withoutUrl } = process.env;
    const none = await new Promise<number>((resolve) => {
      execFile(process.execPath, [BIN, 'revoke', 'migrate'], { env: { ...withoutUrl, DATABASE_URL: '' }, timeout: 20_000 }, (error) => resolve(error ? Number(error.code) : 0));
    });
    assert.equal(none, 2);
  });
});
