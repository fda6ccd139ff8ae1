import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode } from '../resilience.js';
import { ObjectTooLargeError } from './object-store.js';
import type { ObjectHead, ObjectStore, ObjectSummary } from './object-store.js';

/*
 * Layout: one file per object, named by the SHA-256 of its key, so no key can ever name a path
 * outside the bucket directory whatever it contains. The file is one JSON header line (the
 * ObjectHead) followed by the bytes; writing a temp file then renaming it makes each put atomic,
 * and readers see the old or the new object, never a mix.
 */
const SUFFIX = '.obj';
const HEADER_PEEK = 16 * 1024;

function fileName(key: string): string {
  return createHash('sha256').update(key).digest('hex') + SUFFIX;
}

const missing = (err: unknown) => errorCode(err) === 'ENOENT';

/** The object header (first line) of an open object file, and where the bytes start. */
async function readHeader(fh: FileHandle): Promise<{ head: ObjectHead; bodyStart: number }> {
  const buf = Buffer.alloc(HEADER_PEEK);
  const { bytesRead } = await fh.read(buf, 0, HEADER_PEEK, 0);
  const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
  if (nl < 0) throw new Error('corrupt object file');
  return { head: JSON.parse(buf.subarray(0, nl).toString('utf8')) as ObjectHead, bodyStart: nl + 1 };
}

/**
 * Opens an object file for reading, or undefined when there is none. Only a regular file is an
 * object, as this store writes them: a symlink is not followed (a key never reads a file outside
 * the bucket through one planted there), and a FIFO or device is opened without waiting for a
 * writer, then refused like a directory.
 */
async function openObject(path: string): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (missing(err) || errorCode(err) === 'ELOOP') return undefined;
    throw err;
  }
  let regular = false;
  try {
    regular = (await fh.stat()).isFile();
  } finally {
    if (!regular) await fh.close();
  }
  return regular ? fh : undefined;
}

async function readHeaderOf(path: string): Promise<ObjectHead | undefined> {
  const fh = await openObject(path);
  if (!fh) return undefined;
  try {
    return (await readHeader(fh)).head;
  } finally {
    await fh.close();
  }
}

/** An ObjectStore in a local directory: the embedded default when no S3 bucket is configured. */
export async function createDiskStore(dir: string): Promise<ObjectStore> {
  await mkdir(dir, { recursive: true });

  async function head(key: string): Promise<ObjectHead | undefined> {
    return readHeaderOf(join(dir, fileName(key)));
  }

  return {
    kind: 'disk',
    // Local disk has no transient failures worth retrying; every error is reported as is.
    isTransient: () => false,
    head,
    async list(prefix, limit, continuation) {
      // Keys compare as UTF-8 bytes, the order S3 lists in; JavaScript's < compares UTF-16 units,
      // which puts U+E000..U+FFFF after the characters beyond U+FFFF.
      const after = continuation ? Buffer.from(continuation, 'base64url') : undefined;
      const summaries: ObjectSummary[] = [];
      for (const entry of await readdir(dir)) {
        if (!entry.endsWith(SUFFIX)) continue;
        const h = await readHeaderOf(join(dir, entry)); // undefined when deleted while listing
        if (!h || !h.key.startsWith(prefix) || (after !== undefined && Buffer.compare(Buffer.from(h.key), after) <= 0)) continue;
        summaries.push({ key: h.key, size: h.size, last_modified: h.last_modified });
      }
      summaries.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
      const page = summaries.slice(0, limit);
      const last = page[page.length - 1];
      return summaries.length > limit && last
        ? { objects: page, next_continuation: Buffer.from(last.key).toString('base64url') }
        : { objects: page };
    },
    async get(key, maxBytes) {
      // One open file from header to last byte: a put that renames a new file over this one
      // while it streams does not change what this reader sees.
      const fh = await openObject(join(dir, fileName(key)));
      if (!fh) return undefined;
      try {
        const { head: meta, bodyStart } = await readHeader(fh);
        if (meta.size > maxBytes) throw new ObjectTooLargeError(meta.size);
        return { head: meta, body: fh.createReadStream({ start: bodyStart, autoClose: true }) };
      } catch (err) {
        await fh.close();
        throw err;
      }
    },
    async put(key, body, contentType) {
      const etag = `"${createHash('md5').update(body).digest('hex')}"`;
      const meta: ObjectHead = { key, size: body.length, content_type: contentType, last_modified: new Date().toISOString(), etag };
      const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
      try {
        await writeFile(tmp, Buffer.concat([Buffer.from(JSON.stringify(meta) + '\n'), body]), { flush: true });
        await rename(tmp, join(dir, fileName(key)));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return meta;
    },
    async delete(key) {
      await rm(join(dir, fileName(key)), { force: true });
    },
    async close() {},
  };
}
