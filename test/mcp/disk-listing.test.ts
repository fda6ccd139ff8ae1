import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDiskStore } from '../../mcp/backends/disk-store.js';
import type { DiskReadOperation } from '../../mcp/backends/disk-store.js';
import type { ObjectStore, ObjectSummary } from '../../mcp/backends/object-store.js';
import { tempDir } from './helpers.js';

const signal = new AbortController().signal;
const fileOf = (dir: string, key: string) => join(dir, createHash('sha256').update(key).digest('hex') + '.obj');
/** A round modification time, which utimes sets back exactly. */
const ROUND = 1_700_000_000;

/**
 * Overwrites a file in place with bytes no read could take for an object (no header line), of
 * the same length and with the same modification time: the file an lstat sees is unchanged.
 */
async function spoilInPlace(path: string): Promise<void> {
  const { size } = await stat(path);
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(size, 0x78), 0, size, 0);
  } finally {
    await fh.close();
  }
  await utimes(path, ROUND, ROUND);
}

describe('listing the local-disk bucket', () => {
  let dir = '';
  let store: ObjectStore;
  const unreadable: DiskReadOperation[] = [];
  const keys = Array.from({ length: 30 }, (_, i) => `uploads/listed/${String(i).padStart(2, '0')}.txt`);
  let put: ObjectSummary[] = [];
  const putAll = async () => {
    put = [];
    for (const key of keys) {
      const head = await store.put(key, Buffer.from(`bytes of ${key}`), 'text/plain', signal);
      put.push({ key, size: head.size, last_modified: head.last_modified });
    }
  };

  before(async () => {
    dir = await tempDir();
    store = await createDiskStore(dir, { onUnreadable: (operation) => unreadable.push(operation) });
    await putAll();
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads no object file it has read before and that is unchanged: every one spoiled in place is still listed', async () => {
    // A round mtime first, so that the spoiled files can be given exactly the one they had.
    for (const key of keys) await utimes(fileOf(dir, key), ROUND, ROUND);
    assert.deepEqual((await store.list('uploads/listed/', 100, undefined, signal)).objects, put);
    for (const key of keys) await spoilInPlace(fileOf(dir, key));

    const listed = await store.list('uploads/listed/', 100, undefined, signal);
    assert.deepEqual(listed.objects, put, 'the same answer, no file read');
    assert.deepEqual(unreadable, []);
    // A read of one would have failed: get reads it, and refuses it.
    await assert.rejects(store.get(keys[0] as string, 1024, signal), { code: 'OBJECT_UNREADABLE', reason: 'no_header' });
    assert.deepEqual(unreadable, ['get']);
    await putAll();
    unreadable.length = 0;
  });

  it('looks only at the files of the page it answers (and one more): a damaged file past it is not met', async () => {
    // The 20th object changed on disk (size and all): only a listing reaching it reads it again.
    await writeFile(fileOf(dir, keys[20] as string), 'damaged');
    const first = await store.list('uploads/listed/', 5, undefined, signal);
    assert.deepEqual(first.objects.map((o) => o.key), keys.slice(0, 5));
    assert.deepEqual(unreadable, [], 'the damaged file is past the page');
    const rest = await store.list('uploads/listed/', 100, first.next_continuation, signal);
    assert.deepEqual(rest.objects.map((o) => o.key), [...keys.slice(5, 20), ...keys.slice(21)]);
    assert.deepEqual(unreadable, ['list'], 'met once the listing reaches it');
    await store.delete(keys[20] as string, signal);
    unreadable.length = 0;
  });

  it('answers what another gateway sharing the directory put or deleted since it last listed', async () => {
    const other = await createDiskStore(dir);
    try {
      await store.list('uploads/listed/', 100, undefined, signal);
      const bigger = await other.put(keys[1] as string, Buffer.from('a longer body than before'), 'text/plain', signal);
      await other.delete(keys[2] as string, signal);
      const added = await other.put('uploads/listed/03a.txt', Buffer.from('new'), 'text/plain', signal);
      const listed = await store.list('uploads/listed/', 5, undefined, signal);
      assert.deepEqual(listed.objects, [
        put[0],
        { key: keys[1], size: bigger.size, last_modified: bigger.last_modified },
        put[3],
        { key: 'uploads/listed/03a.txt', size: added.size, last_modified: added.last_modified },
        put[4],
      ]);
    } finally {
      await other.close();
    }
  });

  it('reads each file once after opening the bucket (a restart), then no more', async () => {
    const reopened = await createDiskStore(dir, { onUnreadable: (operation) => unreadable.push(operation) });
    try {
      const listed = keys.filter((_, i) => i !== 2 && i !== 20);
      for (const key of listed) await utimes(fileOf(dir, key), ROUND, ROUND);
      const first = await reopened.list('uploads/listed/', 100, undefined, signal);
      assert.equal(first.objects.length, listed.length + 1);
      for (const key of listed) await spoilInPlace(fileOf(dir, key));
      assert.deepEqual((await reopened.list('uploads/listed/', 100, undefined, signal)).objects, first.objects);
      assert.deepEqual(unreadable, []);
    } finally {
      await reopened.close();
    }
  });
});
