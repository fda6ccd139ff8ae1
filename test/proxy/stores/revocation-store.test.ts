import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRevocationBackend, type StoreOptions } from '../../../proxy/stores/backends.js';
import { JournalRevocationStore } from '../../../proxy/stores/revocation-journal.js';
import { SqlRevocationStore, MemoryRevocationStore, type RevocationRecord, type RevocationStore } from '../../../proxy/stores/revocation-store.js';
import { RevocationSet } from '../../../proxy/stores/revocation-set.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';
import { Revoker } from '../../../proxy/stores/revoker.js';
import { LocalRevocationBus } from '../../../proxy/stores/revocation-bus.js';
import { auditRevocation, openSidecarStores } from '../../../proxy/stores/sidecar-stores.js';
import { createSidecarMetrics } from '../../../proxy/observe/metrics.js';
import { AuditLog } from '../../../proxy/observe/audit.js';
import { createLogger } from '../../../proxy/observe/logger.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { openSqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { MAX_TOKEN_LIFETIME_SECONDS as DAY } from '../../../proxy/auth/token-limits.js';
import { closeRedis, openRedis, redisReady } from '../../../proxy/stores/redis.js';
import type { Redis } from 'ioredis';
import type { Revocation } from '../../../proxy/stores/revocation-set.js';
import { createTestSchema, dropPrefix, REDIS_URL, TcpRelay, uniquePrefix, until, withEmbeddedSidecarView } from '../shared-state/helpers.js';

const principal = (over: Partial<{ jti: string; subject: string; issuedAt: number }> = {}) => ({
  subject: 's', clientId: 'c', roles: [], jti: 'j', issuedAt: 1_000, expiresAt: 2_000, boundKeyThumbprint: undefined, ...over,
});

/** A Redis client for assertions; afterwards closed, and the keys of `prefix`-pg and `prefix`-set dropped. */
async function withRedis(prefix: string, run: (redis: Redis) => Promise<void>): Promise<void> {
  const redis = openRedis(REDIS_URL);
  try {
    await redisReady(redis, 2_000);
    await run(redis);
  } finally {
    await closeRedis(redis);
    await dropPrefix(`${prefix}-pg`);
    await dropPrefix(`${prefix}-set`);
  }
}

const record = (revocation: RevocationRecord['revocation'], revokedAt = 100): RevocationRecord => ({ revocation, revokedAt, revokedBy: 'ops', reason: 'r' });

describe('durable revocation store', () => {
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let store: SqlRevocationStore;
  let dir: string;
  before(async () => {
    schema = await createTestSchema();
    store = new SqlRevocationStore(await openSqlClient({ databaseUrl: schema.urlFor(), pool: { max: 2 } }), { ownsClient: true });
    dir = await mkdtemp(join(tmpdir(), 'ca-a2a-journal-'));
  });
  after(async () => {
    await store?.close();
    await schema?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const journal = () => new JournalRevocationStore(join(dir, 'contract.jsonl'));
  /** Every revocation backend a deployment can run, each alone and with Redis, under this test's prefix. */
  const everyBackend = (prefix: string, tag: string): [string, StoreOptions][] => [
    ['memory', {}],
    ['memory + Redis', { redisUrl: REDIS_URL, keyPrefix: `${prefix}-set` }],
    ['journal', { dataDir: join(dir, `${prefix}-${tag}-journal`) }],
    ['journal + Redis', { dataDir: join(dir, `${prefix}-${tag}-host`), redisUrl: REDIS_URL, keyPrefix: `${prefix}-set` }],
    ['PostgreSQL', { databaseUrl: schema.urlFor() }],
    ['PostgreSQL + Redis', { databaseUrl: schema.urlFor(), redisUrl: REDIS_URL, keyPrefix: `${prefix}-pg` }],
  ];
  for (const [name, make] of [['PostgreSQL', () => store], ['memory', () => new MemoryRevocationStore()], ['journal', journal]] as const) {
    it(`${name}: stores the three kinds, lists the active ones, is idempotent per jti, deletes expired rows`, async () => {
      const s: RevocationStore = make();
      assert.equal((await s.add(record({ kind: 'jti', jti: 'a', expiresAt: 500 }))).created, true);
      assert.equal((await s.add(record({ kind: 'jti', jti: 'a', expiresAt: 500 }))).created, false);
      await s.add(record({ kind: 'subject', subject: 'bob', revokedAt: 100, expiresAt: 500 }));
      await s.add(record({ kind: 'before', revokedAt: 90, expiresAt: 200 }));
      assert.equal((await s.active(150)).length, 3);
      assert.deepEqual((await s.active(300)).map((r) => r.kind).sort(), ['jti', 'subject']);
      assert.equal((await s.list(150, 10))[0]?.revokedBy, 'ops');
      assert.equal(await s.deleteExpired(300), 1);
      assert.equal(await s.deleteExpired(600), 2);
      assert.equal((await s.active(0)).length, 0);
    });

    it(`${name}: a jti revoked again until later is kept until the later expiry, never shortened`, async () => {
      const s: RevocationStore = make();
      const added = async (expiresAt: number) => {
        const { created, record: kept } = await s.add(record({ kind: 'jti', jti: 'again', expiresAt }));
        return { created, revocation: kept.revocation };
      };
      assert.deepEqual(await added(5_000), { created: true, revocation: { kind: 'jti', jti: 'again', expiresAt: 5_000 } });
      assert.deepEqual(await added(9_000), { created: false, revocation: { kind: 'jti', jti: 'again', expiresAt: 9_000 } });
      // Revoked again until earlier: reported as kept, until the later expiry.
      assert.deepEqual(await added(7_000), { created: false, revocation: { kind: 'jti', jti: 'again', expiresAt: 9_000 } });
      assert.deepEqual((await s.active(6_000)).filter((r) => r.kind === 'jti'), [{ kind: 'jti', jti: 'again', expiresAt: 9_000 }]);
      assert.deepEqual((await s.list(1_000, 10)).filter((r) => r.revocation.kind === 'jti').map((r) => r.revocation.expiresAt), [9_000]);
      await s.deleteExpired(10_000);
      assert.equal((await s.active(0)).length, 0);
    });

    it(`${name}: lists a revoke-before with when it was made (revoked_at) apart from its cut-off, newest made first`, async () => {
      const s: RevocationStore = make();
      // A subject revoked at 4 000; at 5 000, every token issued by 1 000 (an incident found late).
      await s.add(record({ kind: 'subject', subject: 'listed-order', revokedAt: 4_000, expiresAt: 90_000 }, 4_000));
      await s.add(record({ kind: 'before', revokedAt: 1_000, expiresAt: 90_000 }, 5_000));
      const listed = (await s.list(4_500, 10)).filter((r) => r.revocation.kind !== 'jti');
      assert.deepEqual(listed.map((r) => [r.revocation.kind, r.revokedAt, r.revocation.kind === 'jti' ? undefined : r.revocation.revokedAt]), [['before', 5_000, 1_000], ['subject', 4_000, 4_000]]);
      await s.deleteExpired(100_000);
    });

    it(`${name}: revoke subject and revoke before retried are second rules (created: true), and the latest cut-off is the one enforced`, async () => {
      const s: RevocationStore = make();
      const at = 1_900_000_000;
      let clock = at;
      const revoker = new Revoker({ store: s, bus: new LocalRevocationBus(), now: () => clock * 1000 });
      const subject = `retried-${name}`;
      const first = await revoker.revoke({ kind: 'subject', subject, reason: 'left', revokedBy: 'ops' });
      // Retried ten minutes later (say the first answer was lost): its cut-off is that later time.
      clock = at + 600;
      const again = await revoker.revoke({ kind: 'subject', subject, reason: 'left', revokedBy: 'ops' });
      assert.deepEqual([first.created, again.created], [true, true]);
      const cutOffs = async (kind: 'subject' | 'before'): Promise<number[]> => (await s.list(clock, 100))
        .flatMap((r) => (r.revocation.kind === kind && (kind === 'before' || (r.revocation.kind === 'subject' && r.revocation.subject === subject)) ? [r.revocation.revokedAt] : []))
        .sort((a, b) => a - b);
      assert.deepEqual(await cutOffs('subject'), [at, at + 600], 'two rules, each listed');
      // Retried with the same time, then with an earlier one.
      const befores = [];
      for (const before of [at + 500, at + 500, at + 100]) befores.push(await revoker.revoke({ kind: 'before', before, reason: 'key rotated', revokedBy: 'ops' }));
      assert.deepEqual(befores.map((b) => b.created), [true, true, true]);
      assert.deepEqual(await cutOffs('before'), [at + 100, at + 500, at + 500], 'three rules, each listed');
      const set = new RevocationSet();
      for (const revocation of await s.active(clock)) set.add(revocation);
      // A token of the subject issued between the two (a new login) is refused too; one after, not.
      assert.equal(set.isRevoked(principal({ subject, issuedAt: at + 300 })), true);
      assert.equal(set.isRevoked(principal({ subject, issuedAt: at + 601 })), false);
      // The earlier cut-off retried changes nothing: every token by the later one stays refused.
      assert.equal(set.isRevoked(principal({ subject: 'other', issuedAt: at + 400 })), true);
      assert.equal(set.isRevoked(principal({ subject: 'other', issuedAt: at + 501 })), false);
      await s.deleteExpired(at + 3 * DAY);
    });
  }

  it('journal: two processes\' writers on one file serialise on the lock, and each sees every record', async () => {
    const file = join(dir, 'shared.jsonl');
    // Forty writers queue on one lock, each append fsynced: under a busy disk the last one waits
    // longer than the default 5 s, which this test is not about.
    const [a, b] = [new JournalRevocationStore(file, { lockTimeoutMs: 60_000 }), new JournalRevocationStore(file, { lockTimeoutMs: 60_000 })];
    const writes = Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).add(record({ kind: 'jti', jti: `t${i % 20}`, expiresAt: 500 })));
    const created = await Promise.all(writes);
    assert.equal(created.filter((x) => x.created).length, 20, 'each jti stored once whichever writer came first');
    assert.equal((await a.active(0)).length, 20);
    assert.deepEqual((await readFile(file, 'utf8')).split('\n').filter(Boolean).length, 20);
    assert.equal(await b.deleteExpired(600), 20);
    assert.equal((await a.active(0)).length, 0);
  });

  it('journal: a line cut short by a crash is skipped and the next append starts a fresh line; a corrupt line fails the read', async () => {
    const file = join(dir, 'torn.jsonl');
    const s = new JournalRevocationStore(file);
    await s.add(record({ kind: 'jti', jti: 'kept', expiresAt: 500 }));
    await appendFile(file, '{"revocation":{"kind":"jti","jti":"to');
    assert.deepEqual((await s.active(0)).map((r) => r.kind === 'jti' && r.jti), ['kept']);
    await s.add(record({ kind: 'subject', subject: 'bob', revokedAt: 100, expiresAt: 500 }));
    assert.deepEqual((await s.active(0)).map((r) => r.kind), ['jti', 'subject']);
    await writeFile(file, `garbage\n${(await readFile(file, 'utf8'))}`);
    await assert.rejects(s.active(0), /torn\.jsonl:1: not a revocation record/);
  });

  it('journal: a writer gives up with an error while another holds the lock, and takes over a stale lock', async () => {
    const file = join(dir, 'locked.jsonl');
    await writeFile(`${file}.lock`, '');
    await assert.rejects(new JournalRevocationStore(file, { lockTimeoutMs: 50 }).add(record({ kind: 'jti', jti: 'x', expiresAt: 500 })), /held by another writer/);
    assert.equal((await new JournalRevocationStore(file, { staleLockMs: 0 }).add(record({ kind: 'jti', jti: 'x', expiresAt: 500 }))).created, true);
  });

  it('embedded mode: sidecars of one process share one journal and the in-process push', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    const one = await openRevocationBackend({ dataDir }, () => undefined);
    const two = await openRevocationBackend({ dataDir }, () => undefined);
    try {
      assert.equal(one.describe.durable, 'journal');
      const set = new RevocationSet({ loaded: false });
      const sync = new RevocationSync({ set, store: two.store, bus: two.bus, cleanupIntervalMs: 0 });
      await sync.start();
      assert.equal(set.loaded, true);
      await new Revoker({ store: one.store, bus: one.bus }).revoke({ kind: 'jti', jti: 'embedded', reason: 'r', revokedBy: 'me' });
      assert.equal(set.isRevoked(principal({ jti: 'embedded' })), true);
      assert.equal((await two.store.active(Date.now() / 1000)).length, 1);
      await sync.close();
    } finally {
      await one.close();
      await two.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('PostgreSQL without Redis: sidecars of one process (ca-a2a up) apply a revocation made through another at once, not at the resync', async () => {
    const databaseUrl = schema.urlFor();
    const one = await openRevocationBackend({ databaseUrl }, () => undefined);
    const two = await openRevocationBackend({ databaseUrl }, () => undefined);
    const set = new RevocationSet({ loaded: false });
    const sync = new RevocationSync({ set, store: two.store, bus: two.bus, cleanupIntervalMs: 0, resyncIntervalMs: 60_000 });
    try {
      await sync.start();
      assert.equal(set.loaded, true);
      await new Revoker({ store: one.store, bus: one.bus }).revoke({ kind: 'jti', jti: 'same-process', reason: 'r', revokedBy: 'me' });
      assert.equal(set.isRevoked(principal({ jti: 'same-process' })), true, 'applied when the revocation is acknowledged');
    } finally {
      await sync.close();
      await one.close();
      await two.close();
    }
  });

  it('embedded mode: a revocation another process writes to the journal is applied at once, without waiting for the resync', async () => {
    await withEmbeddedSidecarView(async (dataDir, set) => {
      // Another process: its own store on the same file, and no bus in common.
      const other = new JournalRevocationStore(join(dataDir, 'revocations.jsonl'));
      await other.add(record({ kind: 'jti', jti: 'from-elsewhere', expiresAt: Date.now() / 1000 + 60 }));
      await until(async () => set.isRevoked(principal({ jti: 'from-elsewhere' })));
      // Compaction replaces the file by rename; the watch survives it.
      await other.deleteExpired(Date.now() / 1000 + 120);
      await other.add(record({ kind: 'jti', jti: 'after-compaction', expiresAt: Date.now() / 1000 + 60 }));
      await until(async () => set.isRevoked(principal({ jti: 'after-compaction' })));
    });
  });

  it('journal + Redis: a revocation written to the journal without a push (another process whose push failed) makes this host\'s subscribers resync at once; Redis pushes are still heard', async () => {
    const prefix = uniquePrefix();
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    const otherDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    const backend = await openRevocationBackend({ redisUrl: REDIS_URL, dataDir, keyPrefix: prefix }, () => undefined);
    const otherHost = await openRevocationBackend({ redisUrl: REDIS_URL, dataDir: otherDir, keyPrefix: prefix }, () => undefined);
    let resyncs = 0;
    const pushed: Revocation[] = [];
    const unsubscribe = backend.bus.subscribe({ onRevocation: (r) => void pushed.push(r), onResync: () => void resyncs++ });
    try {
      // The Redis subscription is live (its resync): any later resync is the journal's.
      await until(async () => resyncs === 1);
      const now = Date.now() / 1000;
      // As `ca-a2a revoke` in another process whose Redis push failed: in the journal, not in Redis.
      await new JournalRevocationStore(join(dataDir, 'revocations.jsonl')).add(record({ kind: 'jti', jti: 'unpushed', expiresAt: now + 60 }));
      await until(async () => resyncs >= 2);
      assert.ok((await backend.store.active(now)).some((r) => r.kind === 'jti' && r.jti === 'unpushed'), 'the reload that follows holds it');
      await new Revoker({ store: otherHost.store, bus: otherHost.bus }).revoke({ kind: 'jti', jti: 'other-host', reason: 'r', revokedBy: 'me' });
      await until(async () => pushed.some((r) => r.kind === 'jti' && r.jti === 'other-host'));
    } finally {
      unsubscribe();
      await backend.close();
      await otherHost.close();
      await dropPrefix(prefix);
      await rm(dataDir, { recursive: true, force: true });
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('journal + Redis: with the Redis push failing, a revocation reaches the process\'s other subscribers at once and the push failure is reported; a closed backend\'s subscriber hears no more', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    const options = { redisUrl: 'redis://127.0.0.1:1', dataDir };
    const one = await openRevocationBackend(options, () => undefined);
    const two = await openRevocationBackend(options, () => undefined);
    const heard: string[] = [];
    two.bus.subscribe({ onRevocation: (r) => void heard.push(r.kind === 'jti' ? r.jti : r.kind), onResync: () => undefined });
    try {
      const revoker = new Revoker({ store: one.store, bus: one.bus });
      const result = await revoker.revoke({ kind: 'jti', jti: 'no-redis', reason: 'r', revokedBy: 'me' });
      assert.equal(result.pushed, false, 'the failed Redis push is reported');
      assert.deepEqual(heard, ['no-redis'], 'heard when the revocation is acknowledged');
      await assert.rejects(one.bus.publish({ kind: 'jti', jti: 'direct', expiresAt: Date.now() / 1000 + 60 }, Date.now() / 1000));
      assert.deepEqual(heard, ['no-redis', 'direct']);
      // Closed without unsubscribing first: its listener leaves the process bus it shares with `one`.
      await two.close();
      await revoker.revoke({ kind: 'jti', jti: 'after-close', reason: 'r', revokedBy: 'me' });
      assert.deepEqual(heard, ['no-redis', 'direct']);
    } finally {
      await one.close();
      await two.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('journal + Redis: a sidecar reloads on a journal change while Redis is down, and does not log Redis as back for it', async () => {
    const prefix = uniquePrefix();
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    // The sidecar's Redis connections go through a relay the test can stop.
    const relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
    const capture = new AuditCapture();
    const logger = createLogger({ service: 'archivist', destination: capture });
    const metrics = createSidecarMetrics({ collectProcess: false });
    // The periodic resync is ten minutes away: a load now is the journal watch's.
    const stores = await openSidecarStores({ redisUrl: `redis://127.0.0.1:${relay.port}`, dataDir, keyPrefix: prefix, resyncIntervalMs: 600_000 }, {
      service: 'archivist', metrics, audit: new AuditLog(logger), logger, now: Date.now,
    });
    const redisLines = (event: string) => capture.events(event).filter((line) => line.store === 'redis');
    const failedLoads = async () => (await metrics.storeErrors.get()).values.find((v) => v.labels.store === 'revocation' && v.labels.fallback === 'cached')?.value ?? 0;
    try {
      await until(async () => stores.revocations.loaded);
      await relay.stop();
      await until(async () => redisLines('store_failure').length === 1);
      const before = await failedLoads();
      await new JournalRevocationStore(join(dataDir, 'revocations.jsonl')).add(record({ kind: 'jti', jti: 'during-outage', expiresAt: Date.now() / 1000 + 60 }));
      // The reload fails (what Redis holds of other hosts cannot be read), and is counted.
      await until(async () => (await failedLoads()) > before);
      assert.deepEqual(redisLines('store_recovered'), [], 'Redis is still down');
    } finally {
      await stores.close();
      await relay.stop();
      await dropPrefix(prefix);
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('embedded mode: a backend closed twice releases the data directory\'s shared bus once: the others keep following the journal', async () => {
    await withEmbeddedSidecarView(async (dataDir, set) => {
      const other = await openRevocationBackend({ dataDir }, () => undefined);
      await other.close();
      await other.close();
      await new JournalRevocationStore(join(dataDir, 'revocations.jsonl')).add(record({ kind: 'jti', jti: 'after-double-close', expiresAt: Date.now() / 1000 + 60 }));
      await until(async () => set.isRevoked(principal({ jti: 'after-double-close' })));
    });
  });

  it('refuses a revoke-before in the future or older than any token still accepted, and an empty reason, before touching the store', async () => {
    const s = new MemoryRevocationStore();
    const revoker = new Revoker({ store: s, bus: { publish: async () => undefined, subscribe: () => () => undefined, close: async () => undefined } });
    await assert.rejects(revoker.revoke({ kind: 'before', before: Date.now() / 1000 + 3600, reason: 'r', revokedBy: 'me' }), { code: 'INVALID_REVOCATION', message: /more than 60 s in the future/ });
    // A year mistyped: every token issued by then expired long ago.
    await assert.rejects(revoker.revoke({ kind: 'before', before: Date.now() / 1000 - 365 * 86_400, reason: 'r', revokedBy: 'me' }), { code: 'INVALID_REVOCATION', message: /revoke nothing/ });
    await assert.rejects(revoker.revoke({ kind: 'subject', subject: 'x', reason: ' ', revokedBy: 'me' }), { code: 'INVALID_REVOCATION' });
    assert.equal((await s.active(0)).length, 0);
  });

  it('keeps a revocation past its tokens\' exp for as long as any sidecar may still accept them (the largest clock tolerance)', async () => {
    const s = new MemoryRevocationStore();
    const now = 1_800_000_000;
    const revoker = new Revoker({ store: s, now: () => now * 1000, bus: { publish: async () => undefined, subscribe: () => () => undefined, close: async () => undefined } });
    // As the anomaly auto-revoke does: kept "until the token's exp", which authn accepts for up to 300 s more.
    await revoker.revoke({ kind: 'jti', jti: 'stolen', expiresAt: now + 60, reason: 'r', revokedBy: 'me' });
    await revoker.revoke({ kind: 'subject', subject: 'svc', reason: 'r', revokedBy: 'me' });
    await revoker.revoke({ kind: 'before', before: now, reason: 'r', revokedBy: 'me' });
    const kinds = async (at: number): Promise<string[]> => (await s.active(at)).map((revocation) => revocation.kind).sort();
    assert.deepEqual(await kinds(now + 60 + 299), ['before', 'jti', 'subject'], 'the jti is still listed 299 s after the token\'s exp');
    assert.deepEqual(await kinds(now + 60 + 301), ['before', 'subject']);
    assert.deepEqual(await kinds(now + DAY + 299), ['before', 'subject'], 'subject and before outlive the longest token lifetime (24 h) by the same margin');
    assert.deepEqual(await kinds(now + DAY + 301), []);
    // The in-process set prunes by the same times.
    const set = new RevocationSet();
    for (const revocation of await s.active(now)) set.add(revocation);
    set.prune(now + 60 + 299);
    assert.equal(set.size, 3);
    set.prune(now + DAY + 301);
    assert.equal(set.size, 0);
  });

  it('a jti revoked again until earlier reports, pushes and caches the expiry kept (the later one), on every backend', async () => {
    const prefix = uniquePrefix();
    const dataDir = (name: string) => join(dir, `${prefix}-${name}`);
    const backends: [string, StoreOptions][] = [
      ['PostgreSQL + Redis', { databaseUrl: schema.urlFor(), redisUrl: REDIS_URL, keyPrefix: `${prefix}-pg` }],
      ['journal', { dataDir: dataDir('journal') }],
      ['memory', {}],
      ['journal + Redis', { dataDir: dataDir('host-a'), redisUrl: REDIS_URL, keyPrefix: `${prefix}-set` }],
    ];
    await withRedis(prefix, async (redis) => {
      for (const [name, options] of backends) {
        const backend = await openRevocationBackend(options, () => undefined);
        const pushed: Revocation[] = [];
        const unsubscribe = backend.bus.subscribe({ onRevocation: (r) => void pushed.push(r), onResync: () => undefined });
        try {
          const revoker = new Revoker({ store: backend.store, bus: backend.bus });
          const first = await revoker.revoke({ kind: 'jti', jti: 'twice', reason: 'r', revokedBy: 'me' });
          const now = Date.now() / 1000;
          const again = await revoker.revoke({ kind: 'jti', jti: 'twice', expiresAt: now + 60, reason: 'r', revokedBy: 'me' });
          assert.equal(again.created, false, name);
          assert.equal(again.record.revocation.expiresAt, first.record.revocation.expiresAt, `${name}: the answer names the expiry kept`);
          // (With Redis and no PostgreSQL a load reads it twice: from the journal and from Redis.)
          assert.deepEqual([...new Set((await backend.store.active(now)).filter((r) => r.kind === 'jti' && r.jti === 'twice').map((r) => r.expiresAt))], [first.record.revocation.expiresAt], name);
          if (options.redisUrl !== undefined) {
            assert.ok(await redis.ttl(`${options.keyPrefix}:revoked:jti:twice`) > 3_600, `${name}: the cache entry keeps the later expiry`);
            // (With a journal too, this process hears each push twice: at once, and through Redis.)
            await until(async () => pushed.length >= 2);
            assert.deepEqual([...new Set(pushed.map((r) => r.expiresAt))], [first.record.revocation.expiresAt], `${name}: the push names the expiry kept`);
          }
        } finally {
          unsubscribe();
          await backend.close();
        }
      }
      // Redis without PostgreSQL: revoked until later from another host's journal, until earlier here.
      const hostB = await openRevocationBackend({ dataDir: dataDir('host-b'), redisUrl: REDIS_URL, keyPrefix: `${prefix}-set` }, () => undefined);
      try {
        const again = await new Revoker({ store: hostB.store, bus: hostB.bus }).revoke({ kind: 'jti', jti: 'twice', expiresAt: Date.now() / 1000 + 60, reason: 'r', revokedBy: 'me' });
        assert.equal(again.created, false, 'already revoked on another host');
        assert.ok(again.record.revocation.expiresAt > Date.now() / 1000 + 3_600, 'the other host\'s later expiry is the one kept');
        assert.ok(await redis.ttl(`${prefix}-set:revoked:jti:twice`) > 3_600);
      } finally {
        await hostB.close();
      }
    });
  });

  it('a jti revoked again while in force keeps its first who, when and why; the answer, the audit line and a fresh listing agree, on every backend', async () => {
    const prefix = uniquePrefix();
    const backends = everyBackend(prefix, 'kept');
    const iso = (seconds: number) => new Date(Math.round(seconds * 1000)).toISOString();
    await withRedis(prefix, async () => {
      for (const [index, [name, options]] of backends.entries()) {
        const jti = `kept-${index}`;
        const backend = await openRevocationBackend(options, () => undefined);
        const lines: Record<string, unknown>[] = [];
        const audit = { event: (_type: string, fields: Record<string, unknown>) => void lines.push(fields) };
        const at = Date.now() / 1000;
        let clock = at;
        const revoker = new Revoker({ store: backend.store, bus: backend.bus, now: () => clock * 1000, onRevoked: (result) => auditRevocation(audit, result) });
        try {
          const first = await revoker.revoke({ kind: 'jti', jti, expiresAt: at + 600, reason: 'laptop stolen', revokedBy: 'alice', requestId: 'req-alice' });
          assert.equal(first.created, true, name);
          // Bob, a minute later: once with an earlier expiry (nothing to extend), then with a later one.
          clock = at + 60;
          const same = await revoker.revoke({ kind: 'jti', jti, expiresAt: at + 300, reason: 'seen in a log', revokedBy: 'bob', requestId: 'req-bob-1' });
          const later = await revoker.revoke({ kind: 'jti', jti, expiresAt: at + 3_600, reason: 'seen in a log', revokedBy: 'bob', requestId: 'req-bob-2' });
          const listed = (await backend.store.list(clock, 100)).filter((r) => r.revocation.kind === 'jti' && r.revocation.jti === jti);
          assert.equal(listed.length, 1, name);
          const stored = listed[0]!;
          const who = (r: RevocationRecord) => [r.revokedBy, r.reason, iso(r.revokedAt)];
          assert.deepEqual(who(stored), ['alice', 'laptop stolen', iso(at)], `${name}: the store keeps alice's record`);
          assert.equal(stored.revocation.expiresAt, later.record.revocation.expiresAt, `${name}: the later expiry is stored`);
          assert.ok(stored.revocation.expiresAt > at + 3_600, `${name}: extended to bob's later expiry`);
          for (const [retry, expiresAt] of [[same, first.record.revocation.expiresAt], [later, stored.revocation.expiresAt]] as const) {
            assert.equal(retry.created, false, name);
            assert.deepEqual(who(retry.record), who(stored), `${name}: the answer says what is stored (alice's)`);
            assert.equal(retry.record.revocation.expiresAt, expiresAt, name);
          }
          assert.deepEqual(lines.map((l) => [l.request_id, l.revoked_by, l.reason, l.revoked_at, l.requested_by, l.requested_reason, l.created]), [
            ['req-alice', 'alice', 'laptop stolen', iso(at), 'alice', undefined, true],
            ['req-bob-1', 'alice', 'laptop stolen', iso(at), 'bob', 'seen in a log', false],
            ['req-bob-2', 'alice', 'laptop stolen', iso(at), 'bob', 'seen in a log', false],
          ], `${name}: each request audited, with the record stored and who asked`);
        } finally {
          await backend.close();
        }
      }
    });
  });

  it('a jti whose revocation has expired (its row not deleted yet) is revoked anew: created, with the new expiry and who and why, on every backend', async () => {
    const prefix = uniquePrefix();
    const backends = everyBackend(prefix, 'lapsed');
    await withRedis(prefix, async (redis) => {
      for (const [index, [name, options]] of backends.entries()) {
        const jti = `lapsed-${index}`;
        const backend = await openRevocationBackend(options, () => undefined);
        try {
          // Revoked two days ago, until the longest token lifetime: expired a day ago, its row still there.
          const then = Date.now() / 1000 - 2 * DAY;
          const first = await new Revoker({ store: backend.store, bus: backend.bus, now: () => then * 1000 }).revoke({ kind: 'jti', jti, reason: 'first', revokedBy: 'ops-a' });
          assert.equal(first.created, true, name);
          const again = await new Revoker({ store: backend.store, bus: backend.bus }).revoke({ kind: 'jti', jti, reason: 'second', revokedBy: 'ops-b' });
          const now = Date.now() / 1000;
          assert.equal(again.created, true, `${name}: an expired revocation counts as absent`);
          assert.ok(again.record.revocation.expiresAt > now + DAY, `${name}: the new expiry is answered`);
          // (With Redis and no PostgreSQL a load reads it twice: from the journal and from Redis.)
          const active = (await backend.store.active(now)).filter((r) => r.kind === 'jti' && r.jti === jti).map((r) => r.expiresAt);
          assert.deepEqual([...new Set(active)], [again.record.revocation.expiresAt], `${name}: the new expiry is stored`);
          const listed = (await backend.store.list(now, 100)).filter((r) => r.revocation.kind === 'jti' && r.revocation.jti === jti);
          assert.deepEqual(listed.map((r) => [r.revokedBy, r.reason, r.revocation.expiresAt]), [['ops-b', 'second', again.record.revocation.expiresAt]], `${name}: the new record is listed`);
          if (options.redisUrl !== undefined) assert.ok(await redis.ttl(`${options.keyPrefix}:revoked:jti:${jti}`) > 3_600, `${name}: the cache entry has the new expiry`);
        } finally {
          await backend.close();
        }
      }
    });
  });

  it('refuses an expires_at more than the largest clock tolerance in the past; the anomaly auto-revoke of a token just accepted past its exp still revokes', async () => {
    const now = 1_800_000_000;
    const s = new MemoryRevocationStore();
    const revoker = new Revoker({ store: s, now: () => now * 1000, bus: new LocalRevocationBus() });
    await assert.rejects(revoker.revoke({ kind: 'jti', jti: 'mistyped', expiresAt: now - 365 * DAY, reason: 'r', revokedBy: 'me' }), { code: 'INVALID_REVOCATION', message: /expires_at is more than 300 s in the past/ });
    await assert.rejects(revoker.revoke({ kind: 'jti', jti: 'mistyped', expiresAt: now - 301, reason: 'r', revokedBy: 'me' }), { code: 'INVALID_REVOCATION' });
    assert.equal((await s.active(now)).length, 0, 'nothing stored');
    assert.equal((await revoker.revoke({ kind: 'jti', jti: 'recent', expiresAt: now - 300, reason: 'r', revokedBy: 'me' })).created, true);
    // A sidecar accepted a token 300 s past its exp (the largest clock tolerance) and raises the alarm a moment later.
    const stores = await openSidecarStores({}, {
      service: 'archivist', metrics: createSidecarMetrics(), audit: new AuditLog(createLogger({ service: 'archivist', destination: new AuditCapture() })),
      logger: createLogger({ service: 'archivist', destination: new AuditCapture() }), now: () => (now + 0.5) * 1000,
    });
    try {
      const principal = { subject: 'svc', clientId: 'svc', roles: [], jti: 'stolen-late', issuedAt: now - 600, expiresAt: now - 300, boundKeyThumbprint: undefined };
      assert.equal(await stores.onAnomaly({ principal, requestId: 'req-late', source: '10.0.0.4', sources: 4, maxSources: 3, autoRevoke: true }), true);
      assert.equal(stores.revocations.isRevoked(principal), true);
    } finally {
      await stores.close();
    }
  });

  it('extends a jti revoked again until later, pushed to a sidecar that already holds it (the in-process set too)', async () => {
    const s = new MemoryRevocationStore();
    const pushed = new RevocationSet();
    const now = 1_800_000_000;
    const revoker = new Revoker({ store: s, now: () => now * 1000, bus: { publish: async (revocation) => void pushed.add(revocation), subscribe: () => () => undefined, close: async () => undefined } });
    const token = { subject: 'svc', clientId: 'svc', roles: [], jti: 'leaked', issuedAt: now - 10, expiresAt: now + DAY, boundKeyThumbprint: undefined };
    // First with a mistaken expires_at ten seconds away, then again without one (until the longest token lifetime).
    await revoker.revoke({ kind: 'jti', jti: 'leaked', expiresAt: now + 10, reason: 'r', revokedBy: 'me' });
    const again = await revoker.revoke({ kind: 'jti', jti: 'leaked', reason: 'r', revokedBy: 'me' });
    assert.equal(again.created, false);
    pushed.prune(now + 3_600);
    assert.equal(pushed.isRevoked(token), true, 'still revoked an hour later at the sidecar');
    assert.deepEqual((await s.active(now + 3_600)).map((r) => r.kind === 'jti' && r.expiresAt), [again.record.revocation.expiresAt]);
  });
});
