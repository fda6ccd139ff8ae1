import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalRevocationBus } from '../../../proxy/stores/revocation-bus.js';
import { JournalRevocationStore } from '../../../proxy/stores/revocation-journal.js';
import { RevocationSet, type Revocation } from '../../../proxy/stores/revocation-set.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';

const principal = (jti: string) => ({ subject: 's', clientId: 'c', roles: [], jti, issuedAt: 1_000, expiresAt: 2_000, boundKeyThumbprint: undefined });

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * The sidecar's journal with a slow first query, as PostgreSQL is at start-up: the rows are read
 * when the query is sent and arrive only once `release` is resolved.
 */
class SlowFirstLoad extends JournalRevocationStore {
  loads = 0;
  readonly firstRead = deferred();
  readonly release = deferred();

  override async active(nowSeconds: number): Promise<Revocation[]> {
    const rows = await super.active(nowSeconds);
    if (++this.loads === 1) {
      this.firstRead.resolve();
      await this.release.promise;
    }
    return rows;
  }
}

describe('revocation sync', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ca-a2a-sync-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a reload asked for during a load runs once more after it, so a revocation written meanwhile is applied without the periodic resync', async () => {
    const file = join(dir, 'revocations.jsonl');
    const store = new SlowFirstLoad(file);
    const bus = new LocalRevocationBus();
    const set = new RevocationSet({ loaded: false });
    const sync = new RevocationSync({ set, store, bus, cleanupIntervalMs: 0, resyncIntervalMs: 60_000 });
    try {
      const started = sync.start();
      await store.firstRead.promise;
      // Another process revokes, then its event (a journal change) asks this sidecar to reload.
      await new JournalRevocationStore(file).add({ revocation: { kind: 'jti', jti: 'late', expiresAt: Date.now() / 1000 + 60 }, revokedAt: 100, revokedBy: 'ops', reason: 'r' });
      const reloads = [sync.reload(), sync.reload(), sync.reload()];
      store.release.resolve();
      await started;
      await Promise.all(reloads);
      assert.equal(set.isRevoked(principal('late')), true);
      assert.equal(store.loads, 2, 'the reloads asked for during the first load share one more load');
    } finally {
      await sync.close();
      await bus.close();
    }
  });
});
