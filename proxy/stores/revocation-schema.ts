import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from './sql/migrate.js';
import type { SqlClient, SqlQueryable } from './sql/sql-client.js';
import { REVOCATION_MIGRATION_SET, REVOCATION_MIGRATIONS_DIR, REVOCATION_READ_TABLES } from './revocation-store.js';

/** What {@link setUpRevocationDatabase} did. */
export interface RevocationSetupResult {
  /** Migration versions applied by this run (empty when the schema was current). */
  readonly applied: readonly number[];
  /** The read-only role, when a reader URL was given: created, or found and brought back to SELECT only. */
  readonly reader?: { readonly role: string; readonly created: boolean };
}

/** A role name we create without quoting surprises (PostgreSQL's 63-byte limit). */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The writer's one-shot step, run with the owner's connection (`ca-a2a revoke migrate`, the
 * admin task's first container in deploy/cdk): applies the revocation migrations, then, given
 * `readerUrl`, makes that URL's user a login role whose password is the URL's and which may
 * SELECT the tables a sidecar reads, nothing more. Run again at every start: the password follows
 * the URL's secret, and a table a later migration adds is granted. Serialised with migrate() by
 * its advisory lock, so two admin tasks starting together do not race on CREATE ROLE.
 */
export async function setUpRevocationDatabase(client: SqlClient, options: { readerUrl?: string | undefined }): Promise<RevocationSetupResult> {
  const applied = await migrate(client, { set: REVOCATION_MIGRATION_SET, dir: REVOCATION_MIGRATIONS_DIR });
  if (options.readerUrl === undefined) return { applied };
  const { role, password } = readerCredentials(options.readerUrl);
  const reader = await client.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('ca_a2a_migrate'))");
    return ensureReader(tx, role, password);
  });
  return { applied, reader };
}

function readerCredentials(url: string): { role: string; password: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('the reader URL is not a URL');
  }
  const role = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  if (!ROLE_NAME.test(role)) throw new Error(`the reader URL's user '${role}' is not a plain role name (a-z, 0-9, _; at most 63)`);
  // SCRAM hashes the SASLprep'd password; printable ASCII is its own SASLprep form.
  if (!/^[\x21-\x7e]{16,}$/.test(password)) throw new Error("the reader URL's password must be at least 16 printable ASCII characters");
  return { role, password };
}

async function ensureReader(tx: SqlQueryable, role: string, password: string): Promise<{ role: string; created: boolean }> {
  const where = await tx.query<{ me: string; db: string; schema: string | null }>('SELECT current_user AS me, current_database() AS db, current_schema() AS schema');
  const { me, db, schema } = where.rows[0] ?? { me: '', db: '', schema: null };
  if (schema === null) throw new Error('no current schema (search_path names none that exists) to grant');
  // The same user in both URLs would give the owner a new password and no fewer rights.
  if (me === role) throw new Error(`the reader URL names the owner's own role '${role}': give the sidecars a role of their own`);
  const found = await tx.query<{ members: string[]; powers: string[] }>(
    `SELECT ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid) AS members,
            array_remove(ARRAY[CASE WHEN r.rolsuper THEN 'SUPERUSER' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                               CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                               CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END]::text[], NULL) AS powers
       FROM pg_roles r WHERE r.rolname = $1`,
    [role],
  );
  const existing = found.rows[0];
  // Membership would hand the role every right of the other, an attribute rights past any
  // grant: not read-only, whatever we grant. Refused rather than altered: the owner of an RDS
  // database is no superuser, and PostgreSQL lets only a superuser name SUPERUSER (even NO…),
  // REPLICATION or BYPASSRLS in ALTER ROLE.
  if (existing !== undefined && existing.members.length > 0) {
    throw new Error(`role '${role}' is a member of ${existing.members.join(', ')}: not a read-only role; revoke those memberships first`);
  }
  if (existing !== undefined && existing.powers.length > 0) {
    throw new Error(`role '${role}' has ${existing.powers.join(', ')}: not a read-only role; take ${existing.powers.length === 1 ? 'it' : 'them'} back first (ALTER ROLE … NO…)`);
  }
  const name = pg.escapeIdentifier(role);
  // The verifier, not the password, goes to the server: a statement log never holds it.
  const secret = pg.escapeLiteral(scramVerifier(password));
  await tx.query(existing === undefined
    ? `CREATE ROLE ${name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${secret}`
    : `ALTER ROLE ${name} LOGIN PASSWORD ${secret}`);
  await tx.query(`GRANT CONNECT ON DATABASE ${pg.escapeIdentifier(db)} TO ${name}`);
  await tx.query(`GRANT USAGE ON SCHEMA ${pg.escapeIdentifier(schema)} TO ${name}`);
  const tables = REVOCATION_READ_TABLES.map((table) => pg.escapeIdentifier(table)).join(', ');
  // Whatever was granted before on these tables goes; SELECT stays.
  await tx.query(`REVOKE ALL ON ${tables} FROM ${name}`);
  await tx.query(`GRANT SELECT ON ${tables} TO ${name}`);
  return { role, created: existing === undefined };
}

/** PostgreSQL's SCRAM-SHA-256 password verifier (RFC 5802 §3, RFC 7677; what `\password` sends). */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
