import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { createTestSchema, dropPrefix, REDIS_URL, uniquePrefix, until, withEmbeddedSidecarView } from './helpers.js';

const BIN = fileURLToPath(new URL('../../../bin/ca-a2a.js', import.meta.url));

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'revoke', ...args], { env: { ...process.env, ...env }, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('ca-a2a revoke', () => {
  const prefix = uniquePrefix();
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let env: Record<string, string>;
  before(async () => {
    schema = await createTestSchema();
    env = { DATABASE_URL: schema.urlFor(), REDIS_URL, CA_A2A_KEY_PREFIX: prefix };
  });
  after(async () => {
    await schema?.drop();
    await dropPrefix(prefix);
  });

  const rows = async (sql: string): Promise<Record<string, unknown>[]> => {
    const client = new pg.Client({ connectionString: schema.urlFor() });
    await client.connect();
    try {
      return (await client.query(sql)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  };

  it('exits 0 once each kind of revocation is durable in PostgreSQL', async () => {
    const jti = await run(['jti', 'cli-jti-1', '--reason', 'phone lost', '--by', 'oncall'], env);
    assert.equal(jti.code, 0, jti.stderr);
    assert.match(jti.stdout, /revoked jti cli-jti-1; durable/);
    assert.deepEqual(await rows(`SELECT jti, revoked_by, reason FROM revoked_tokens`), [{ jti: 'cli-jti-1', revoked_by: 'oncall', reason: 'phone lost' }]);
    assert.equal((await run(['subject', 'bob', '--reason', 'left the company'], env)).code, 0);
    assert.equal((await run(['before', new Date(Date.now() - 60_000).toISOString(), '--reason', 'key rotation'], env)).code, 0);
    assert.deepEqual((await rows(`SELECT kind, subject FROM revocation_rules ORDER BY id`)).map((r) => [r.kind, r.subject]), [['subject', 'bob'], ['before', null]]);
  });

  it('writes the token_revoked audit line (who, what, why, a request_id of its own) on stderr, as the admin API does, prints that request id, and keeps stdout to its one line', async () => {
    const res = await run(['jti', 'cli-jti-audit', '--reason', 'token in a ticket', '--by', 'oncall-bob'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.split('\n').filter(Boolean).length, 1);
    const lines = res.stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
    const audit = lines.find((line) => line.event_type === 'token_revoked');
    assert.ok(audit, res.stderr);
    assert.equal(audit.service, 'revoke');
    assert.deepEqual([audit.kind, audit.jti, audit.revoked_by, audit.reason, audit.created, audit.pushed], ['jti', 'cli-jti-audit', 'oncall-bob', 'token in a ticket', true, true]);
    const requestId = (stderr: string): string => /^ca-a2a revoke: request id: ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) /m.exec(stderr)?.[1] ?? '';
    const printed = requestId(res.stderr);
    assert.ok(printed, res.stderr);
    assert.equal(audit.request_id, printed);
    // Each invocation has its own.
    const again = await run(['jti', 'cli-jti-audit', '--reason', 'token in a ticket'], env);
    assert.ok(requestId(again.stderr), again.stderr);
    assert.notEqual(requestId(again.stderr), printed);
  });

  it('revoking a jti again until earlier says, and audits, the first revocation (who, when, why) and the later expiry it is kept until', async () => {
    const first = await run(['jti', 'cli-jti-twice', '--reason', 'phone lost', '--by', 'alice'], env);
    assert.equal(first.code, 0, first.stderr);
    const keptUntil = /kept until (\S+)/.exec(first.stdout)?.[1];
    assert.ok(keptUntil, first.stdout);
    const auditOf = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.event_type === 'token_revoked');
    const revokedAt = auditOf(first.stderr)?.revoked_at;
    assert.equal(typeof revokedAt, 'string');
    const soon = new Date(Date.now() + 600_000).toISOString();
    const again = await run(['jti', 'cli-jti-twice', '--reason', 'seen in a log', '--by', 'bob', '--expires-at', soon], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `revoked jti cli-jti-twice (already revoked by alice at ${String(revokedAt)}); durable; kept until ${keptUntil}\n`);
    const audit = auditOf(again.stderr);
    assert.deepEqual([audit?.revoked_by, audit?.reason, audit?.revoked_at, audit?.expires_at, audit?.requested_by, audit?.requested_reason, audit?.created], ['alice', 'phone lost', revokedAt, keptUntil, 'bob', 'seen in a log', false]);
    assert.deepEqual(await rows(`SELECT revoked_by, reason FROM revoked_tokens WHERE jti = 'cli-jti-twice'`), [{ revoked_by: 'alice', reason: 'phone lost' }]);
  });

  it('prints the first revoker\'s name with its control characters replaced, so no escape sequence reaches the terminal', async () => {
    assert.equal((await run(['jti', 'cli-jti-escape', '--reason', 'r', '--by', 'mallory\u001b[2J\u009b1m'], env)).code, 0);
    const again = await run(['jti', 'cli-jti-escape', '--reason', 'r', '--by', 'bob'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /\(already revoked by mallory\ufffd\[2J\ufffd1m at /);
    assert.doesNotMatch(again.stdout.trimEnd(), /\p{Cc}/u);
  });

  it('exits 1 naming PostgreSQL when it is unreachable, and stores nothing', async () => {
    const res = await run(['jti', 'cli-jti-2', '--reason', 'x'], { ...env, DATABASE_URL: schema.urlFor('127.0.0.1:1') });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /could not store the revocation in PostgreSQL .*ECONNREFUSED.*nothing was revoked/);
    assert.equal((await rows(`SELECT 1 FROM revoked_tokens WHERE jti = 'cli-jti-2'`)).length, 0);
  });

  it('embedded: writes the journal of CA_A2A_DATA_DIR while another process holds it open, and that process applies it as soon as the journal changes', async () => {
    await withEmbeddedSidecarView(async (dataDir, set) => {
      const res = await run(['subject', 'mallory', '--reason', 'left'], { DATABASE_URL: '', REDIS_URL: '', CA_A2A_DATA_DIR: dataDir });
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stderr, /using the embedded journal/);
      const token = { subject: 'mallory', clientId: 'c', roles: [], jti: 'j', issuedAt: Date.now() / 1000 - 10, expiresAt: Date.now() / 1000 + 60, boundKeyThumbprint: undefined };
      await until(async () => set.isRevoked(token));
    });
  });

  it('without DATABASE_URL, exits 1 and revokes nothing when the data directory does not exist (no sidecar keeps its revocations there)', async () => {
    const missing = join(tempDirSync('revoke-cwd'), '.ca-a2a');
    const res = await run(['jti', 'cli-jti-3', '--reason', 'leak'], { DATABASE_URL: '', REDIS_URL: '', CA_A2A_DATA_DIR: missing });
    assert.equal(res.code, 1, res.stdout);
    assert.match(res.stderr, /DATABASE_URL is not set and .* does not exist.*nothing was revoked/);
    assert.equal(res.stdout, '');
    assert.equal(existsSync(missing), false);
  });

  it('exits 2 on a date that does not exist instead of reading 2025-02-30 as March 2, and on one so long past it would revoke nothing', async () => {
    for (const time of ['2025-02-30T10:00:00Z', '2025-02-29T10:00Z', '2025-04-31T10:00:00+02:00']) {
      const res = await run(['before', time, '--reason', 'key rotation'], env);
      assert.equal(res.code, 2, `${time}: ${res.stdout}`);
      assert.match(res.stderr, /before must be/);
    }
    // A leap day is a date: refused only for being long past, as every token issued by then has expired.
    const leapDay = await run(['before', '2024-02-29T10:00:00Z', '--reason', 'key rotation'], env);
    assert.equal(leapDay.code, 2, leapDay.stdout);
    assert.match(leapDay.stderr, /more than the max token lifetime \(24 h\) in the past: every token issued by then has expired, so it would revoke nothing/);
    assert.doesNotMatch(leapDay.stderr, /before must be/);
  });

  it('exits 2 and revokes nothing on an --expires-at long past (a mistyped year would make it a 5-minute revocation)', async () => {
    const lastYear = new Date(Date.now() - 365 * 24 * 3600_000).toISOString();
    const res = await run(['jti', 'cli-jti-mistyped', '--reason', 'r', '--expires-at', lastYear], env);
    assert.equal(res.code, 2, res.stdout);
    assert.match(res.stderr, /expires_at is more than 300 s in the past/);
    assert.equal(res.stdout, '');
    // Another revocation makes sure the table exists, then: the refused one is not in it.
    assert.equal((await run(['jti', 'cli-jti-after-mistyped', '--reason', 'r'], env)).code, 0);
    assert.deepEqual(await rows(`SELECT jti FROM revoked_tokens WHERE jti LIKE 'cli-jti-%mistyped'`), [{ jti: 'cli-jti-after-mistyped' }]);
  });

  it('exits 2 on a usage error (missing reason, unknown kind, a time without a zone)', async () => {
    assert.equal((await run(['jti', 'x'], env)).code, 2);
    assert.equal((await run(['everything', 'x', '--reason', 'r'], env)).code, 2);
    assert.equal((await run(['before', '2025-01-01 10:00', '--reason', 'r'], env)).code, 2);
  });

  it('exits 2 and revokes nothing on --expires-at with a subject or before revocation, which has no expiry to give', async () => {
    const expiresAt = new Date(Date.now() + 3600_000).toISOString();
    for (const args of [['subject', 'cli-sub-expiring'], ['before', new Date(Date.now() - 60_000).toISOString()]]) {
      const res = await run([...args, '--reason', 'r', '--expires-at', expiresAt], env);
      assert.equal(res.code, 2, res.stdout);
      assert.match(res.stderr, /--expires-at applies to revoke jti only/);
      assert.equal(res.stdout, '');
    }
    assert.equal((await run(['jti', 'cli-jti-after-expiring', '--reason', 'r'], env)).code, 0);
    assert.deepEqual(await rows(`SELECT subject FROM revocation_rules WHERE subject = 'cli-sub-expiring'`), []);
  });
});
