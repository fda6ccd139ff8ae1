import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournalRevocationStore } from '../../../proxy/stores/revocation-journal.js';
import type { RevocationRecord } from '../../../proxy/stores/revocation-store.js';

// A non-ASCII reason: bytes and characters differ, as they do where `add` cuts a torn tail off.
const record = (jti: string): RevocationRecord => ({ revocation: { kind: 'jti', jti, expiresAt: 500 }, revokedAt: 100, revokedBy: 'ops', reason: 'révoqué' });
const jtis = async (store: JournalRevocationStore): Promise<string[]> => (await store.active(0)).map((r) => (r.kind === 'jti' ? r.jti : r.kind));
const line = (jti: string): string => `${JSON.stringify(record(jti))}\n`;

describe('revocation journal after a crash mid-append', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ca-a2a-journal-torn-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tails = [
    ['cut within its first 14 bytes', '{"rev'],
    ['NUL bytes left by a power loss', '\0'.repeat(8)],
  ] as const;
  for (const [name, tail] of tails) {
    it(`an unacknowledged tail ${name} is skipped, cut off by the next append, and the journal stays readable`, async () => {
      const file = join(dir, `${name.replaceAll(' ', '-')}.jsonl`);
      const store = new JournalRevocationStore(file);
      await store.add(record('a'));
      await appendFile(file, tail);
      assert.deepEqual(await jtis(store), ['a']);
      assert.equal((await store.add(record('b'))).created, true);
      assert.deepEqual(await jtis(store), ['a', 'b']);
      assert.equal((await store.add(record('c'))).created, true);
      assert.equal(await readFile(file, 'utf8'), line('a') + line('b') + line('c'));
    });
  }

  const corrupt = [
    ['garbage', 'garbage'],
    ['NUL bytes', '\0'.repeat(8)],
    ['a record prefix too short to be a torn append', '{"rev'],
  ] as const;
  for (const [name, bad] of corrupt) {
    it(`a complete line of ${name} between records fails every read and every add (fail closed)`, async () => {
      const file = join(dir, `corrupt-${name.replaceAll(' ', '-')}.jsonl`);
      const store = new JournalRevocationStore(file);
      await store.add(record('a'));
      await appendFile(file, `${bad}\n${line('b')}`);
      await assert.rejects(store.active(0), /corrupt-.*\.jsonl:2: not a revocation record/);
      await assert.rejects(store.add(record('c')), /:2: not a revocation record/);
    });
  }
});
