import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { createDiskStore } from '../../mcp/backends/disk-store.js';
import type { ObjectStore } from '../../mcp/backends/object-store.js';
import { createS3Store } from '../../mcp/backends/s3-store.js';
import { startS3rver, tempDir } from './helpers.js';

const stores: { name: string; open(cleanups: (() => Promise<void>)[]): Promise<ObjectStore> }[] = [
  {
    name: 'S3 (s3rver)',
    async open(cleanups) {
      const server = await startS3rver();
      cleanups.push(() => server.close());
      return createS3Store({ bucket: server.bucket, endpoint: server.endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    },
  },
  {
    name: 'local disk',
    async open(cleanups) {
      const dir = await tempDir();
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return createDiskStore(dir);
    },
  },
];

for (const { name, open } of stores) {
  describe(`object store exists() on ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    let store: ObjectStore;
    const signal = new AbortController().signal;
    before(async () => {
      store = await open(cleanups);
      cleanups.unshift(() => store.close());
    });
    after(async () => {
      for (const c of cleanups) await c();
    });

    it('says whether a key names an object, and nothing else of it', async () => {
      await store.put('uploads/present.txt', Buffer.from('hello'), 'text/plain', signal);
      assert.equal(await store.exists('uploads/present.txt', signal), true);
      assert.equal(await store.exists('uploads/absent.txt', signal), false);
      await store.delete('uploads/present.txt', signal);
      assert.equal(await store.exists('uploads/present.txt', signal), false);
    });
  });
}
