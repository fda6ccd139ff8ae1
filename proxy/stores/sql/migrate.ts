import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SqlClient } from './sql-client.js';

/** One migration file: `NNN_name.sql`. */
export interface MigrationFile {
  version: number;
  name: string;
  path: string;
}

/** Options of {@link migrate}: `set` names the owner (e.g. `mcp`, `revocation`), `dir` holds its files. */
export interface MigrateOptions {
  set: string;
  dir: string;
}

const FILE_PATTERN = /^(\d{3})_([a-z0-9_]+)\.sql$/;

/** Lists the `NNN_name.sql` files of `dir` in version order; refuses two files with one version. */
export async function listMigrations(dir: string): Promise<MigrationFile[]> {
  const files: MigrationFile[] = [];
  for (const entry of await readdir(dir)) {
    const m = FILE_PATTERN.exec(entry);
    if (!m || m[1] === undefined || m[2] === undefined) continue;
    files.push({ version: Number(m[1]), name: m[2], path: join(dir, entry) });
  }
  files.sort((a, b) => a.version - b.version);
  for (let i = 1; i < files.length; i++) {
    if (files[i]?.version === files[i - 1]?.version) {
      throw new Error(`migration set in ${dir} has two files with version ${files[i]?.version}`);
    }
  }
  return files;
}

/**
 * Applies the pending migrations of one set, in order, each exactly once, and records them in
 * `schema_migrations (set_name, version, name, applied_at)`. The whole run is one transaction
 * holding a transaction-scoped advisory lock, so concurrent processes starting against one
 * database serialise and the later ones find nothing left to do. The lock is one for every set:
 * all sets share `schema_migrations`, and two concurrent `CREATE TABLE IF NOT EXISTS` of it fail
 * one of them (23505 on pg_type), so a sidecar and the gateway starting together on a new
 * database would not both start. PostgreSQL DDL is transactional, so a failing file leaves the
 * set exactly as it was.
 * @returns the versions applied by this call.
 */
export async function migrate(client: SqlClient, options: MigrateOptions): Promise<number[]> {
  const files = await listMigrations(options.dir);
  const scripts = await Promise.all(files.map((f) => readFile(f.path, 'utf8')));
  return client.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('ca_a2a_migrate'))");
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      set_name text NOT NULL,
      version integer NOT NULL,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (set_name, version)
    )`);
    const done = await tx.query<{ version: number }>(
      'SELECT version FROM schema_migrations WHERE set_name = $1',
      [options.set],
    );
    const applied = new Set(done.rows.map((r) => Number(r.version)));
    const now: number[] = [];
    for (const [i, file] of files.entries()) {
      if (applied.has(file.version)) continue;
      await tx.exec(scripts[i] ?? '');
      await tx.query('INSERT INTO schema_migrations (set_name, version, name) VALUES ($1, $2, $3)', [
        options.set,
        file.version,
        file.name,
      ]);
      now.push(file.version);
    }
    return now;
  });
}
