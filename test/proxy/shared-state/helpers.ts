import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import pg from 'pg';
import { createTestSchema, PG_URL, TcpRelay } from '../../mcp/helpers.js';
import { setUpRevocationDatabase } from '../../../proxy/stores/revocation-schema.js';
import { openSqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { dropKeysWithPrefix } from '../../../proxy/stores/redis.js';
import { RevocationSet } from '../../../proxy/stores/revocation-set.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';
import type { SidecarStoreOptions } from '../../../proxy/stores/sidecar-stores.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export { createTestSchema, TcpRelay };

/** A key prefix of its own per suite run, so suites sharing the one Redis never meet. */
export function uniquePrefix(): string {
  return `ca-a2a-test-${randomBytes(5).toString('hex')}`;
}

/** Deletes every key of a prefix (after()). */
export function dropPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  return dropKeysWithPrefix(url, prefix);
}

/** Store options for a sidecar on the real Redis and a suite's own PostgreSQL schema. */
export function sharedStores(prefix: string, databaseUrl: string, extra: Partial<SidecarStoreOptions> = {}): SidecarStoreOptions {
  return { redisUrl: REDIS_URL, databaseUrl, keyPrefix: prefix, ...extra };
}

/** POSTs a JSON body from a chosen local address (127.0.0.x), so the sidecar sees that peer. */
export async function postFrom(url: string, localAddress: string, token: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  return (await answerFrom(url, localAddress, token, body, headers)).status;
}

/** As {@link postFrom}, with the refusal's reason (`error.data.reason`) when there is one. */
export function answerFrom(url: string, localAddress: string, token: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; reason: unknown }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/message`, {
      method: 'POST',
      localAddress,
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), authorization: `Bearer ${token}`, ...headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        let reason: unknown;
        try {
          reason = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { data?: { reason?: unknown } } }).error?.data?.reason;
        } catch {
          reason = undefined;
        }
        resolve({ status: res.statusCode ?? 0, reason });
      });
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** A read-only revocations role of a test's own: its name, the password its URL carries, and that URL. */
export interface RevocationReaderRole {
  readonly role: string;
  readonly password: string;
  /** The owner's URL (same database and schema) with the role's name and password. */
  readonly readerUrl: string;
  /** Removes the role and what was granted to it, if it was made (run after dropping the schema). */
  drop(): Promise<void>;
}

/**
 * The shipped AWS sidecars' PostgreSQL access to a test schema: the revocation tables migrated by
 * the owner, and a role of its own (roles are cluster-wide) granted SELECT only, as
 * `ca-a2a revoke migrate` grants revocations_reader. With `setUp: false`, only the role's name and
 * URL, nothing made yet: for a test that migrates (or makes the role) itself.
 */
export async function readOnlyRevocationRole(ownerUrl: string, { setUp = true }: { setUp?: boolean } = {}): Promise<RevocationReaderRole> {
  const role = `ca_a2a_test_reader_${randomBytes(5).toString('hex')}`;
  const password = randomBytes(24).toString('hex');
  const url = new URL(ownerUrl);
  url.username = role;
  url.password = password;
  if (setUp) {
    const owner = await openSqlClient({ databaseUrl: ownerUrl, pool: { max: 1 } });
    try {
      await setUpRevocationDatabase(owner, { readerUrl: url.toString() });
    } finally {
      await owner.close();
    }
  }
  return {
    role,
    password,
    readerUrl: url.toString(),
    async drop() {
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      try {
        if ((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 0) return;
        // DROP OWNED BY also revokes what was granted to the role in this database (CONNECT included).
        await admin.query(`DROP OWNED BY ${pg.escapeIdentifier(role)}`);
        await admin.query(`DROP ROLE ${pg.escapeIdentifier(role)}`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** Polls until `check` is true; resolves to the elapsed milliseconds (rejects after `timeoutMs`). */
export async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if (await check()) return performance.now() - started;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

/**
 * A sidecar's revocation view on an embedded data directory of its own, as a running process has
 * it: the backend, a set fed by a sync whose periodic resync is a minute away (so only the journal
 * watch can explain a prompt update). `run` gets the directory and the set; all is closed after.
 */
export async function withEmbeddedSidecarView(run: (dataDir: string, set: RevocationSet) => Promise<void>): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
  const running = await openRevocationBackend({ dataDir }, () => undefined);
  const set = new RevocationSet({ loaded: false });
  const sync = new RevocationSync({ set, store: running.store, bus: running.bus, cleanupIntervalMs: 0, resyncIntervalMs: 60_000 });
  try {
    await sync.start();
    await run(dataDir, set);
  } finally {
    await sync.close();
    await running.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
