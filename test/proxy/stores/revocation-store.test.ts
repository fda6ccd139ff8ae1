import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { SqlRevocationStore, MemoryRevocationStore, type RevocationStore } from '../../../proxy/stores/revocation-store.js';
import { RevocationSet } from '../../../proxy/stores/revocation-set.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';
import { Revoker } from '../../../proxy/stores/revoker.js';
import { openSqlClient } from '../../../proxy/stores/sql/sql-client.js';
import { createTestSchema } from '../shared-state/helpers.js';

const principal = (over: Partial<{ jti: string; subject: string; issuedAt: number }> = {}) => ({
  subject: 's', clientId: 'c', roles: [], jti: 'j', issuedAt: 1_000, expiresAt: 2_000, boundKeyThumbprint: undefined, ...over,
});

describe('durable revocation store', () => {
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let store: SqlRevocationStore;
  before(async () => {
    schema = await createTestSchema();
    store = new SqlRevocationStore(await openSqlClient({ databaseUrl: schema.urlFor(), pool: { max: 2 } }), { ownsClient: true });
  });
  after(async () => {
    await store?.close();
    await schema?.drop();
  });

  for (const [name, make] of [['PostgreSQL', () => store], ['memory', () => new MemoryRevocationStore()]] as const) {
    it(`${name}: stores the three kinds, lists the active ones, is idempotent per jti, deletes expired rows`, async () => {
      const s: RevocationStore = make();
      const record = (revocation: Parameters<RevocationStore['add']>[0]['revocation']) => ({ revocation, revokedAt: 100, revokedBy: 'ops', reason: 'r' });
      assert.equal(await s.add(record({ kind: 'jti', jti: 'a', expiresAt: 500 })), true);
      assert.equal(await s.add(record({ kind: 'jti', jti: 'a', expiresAt: 900 })), false);
      await s.add(record({ kind: 'subject', subject: 'bob', revokedAt: 100, expiresAt: 500 }));
      await s.add(record({ kind: 'before', revokedAt: 90, expiresAt: 200 }));
      assert.equal((await s.active(150)).length, 3);
      assert.deepEqual((await s.active(300)).map((r) => r.kind).sort(), ['jti', 'subject']);
      assert.equal((await s.list(150, 10))[0]?.revokedBy, 'ops');
      assert.equal(await s.deleteExpired(300), 1);
      assert.equal(await s.deleteExpired(600), 2);
      assert.equal((await s.active(0)).length, 0);
    });
  }

  it('embedded mode: sidecars of one process share one PGlite database and the in-process push', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
    const one = await openRevocationBackend({ dataDir }, () => undefined);
    const two = await openRevocationBackend({ dataDir }, () => undefined);
    try {
      assert.equal(one.describe.durable, 'pglite');
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

  it('refuses a revoke-before in the future and an empty reason before touching the store', async () => {
    const s = new MemoryRevocationStore();
    const revoker = new Revoker({ store: s, bus: { publish: async () => undefined, subscribe: () => () => undefined, close: async () => undefined } });
    await assert.rejects(revoker.revoke({ kind: 'before', before: Date.now() / 1000 + 3600, reason: 'r', revokedBy: 'me' }), { code: 'INVALID_REVOCATION' });
    await assert.rejects(revoker.revoke({ kind: 'subject', subject: 'x', reason: ' ', revokedBy: 'me' }), { code: 'INVALID_REVOCATION' });
    assert.equal((await s.active(0)).length, 0);
  });
});
