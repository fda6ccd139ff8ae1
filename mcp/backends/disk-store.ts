import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorCode } from '../resilience.js';
import { ObjectTooLargeError, UnreadableObjectError } from './object-store.js';
import type { ObjectHead, ObjectStore, ObjectSummary } from './object-store.js';

/*
 * Layout: one file per object, named by the SHA-256 of its key, so no key can ever name a path
 * outside the bucket directory whatever it contains. The file is one JSON header line (the
 * ObjectHead) followed by the bytes; writing a temp file then renaming it makes each put atomic,
 * and readers see the old or the new object, never a mix.
 */
const SUFFIX = '.obj';
const TEMP_PREFIX = '.tmp-';
/**
 * A temp file older than this was left by a gateway stopped between write and rename; a younger
 * one may be a put in flight in another gateway sharing the directory (a put takes seconds).
 */
const STALE_TEMP_MS = 60 * 60 * 1000;
const HEADER_PEEK = 16 * 1024;

function fileName(key: string): string {
  return createHash('sha256').update(key).digest('hex') + SUFFIX;
}

const missing = (err: unknown) => errorCode(err) === 'ENOENT';

const isHead = (v: unknown): v is ObjectHead =>
  typeof v === 'object' &&
  v !== null &&
  'key' in v &&
  typeof v.key === 'string' &&
  'size' in v &&
  typeof v.size === 'number' &&
  Number.isSafeInteger(v.size) &&
  v.size >= 0 &&
  'content_type' in v &&
  typeof v.content_type === 'string' &&
  'last_modified' in v &&
  typeof v.last_modified === 'string' &&
  'etag' in v &&
  typeof v.etag === 'string';

/** An object file opened for reading, and its size in bytes when opened. */
interface OpenObject {
  fh: FileHandle;
  fileSize: number;
}

/**
 * The object header (first line) of an open object file, and where the bytes start. A file not
 * laid out as put writes it (no header line, a header that is not an object's, one naming a key
 * whose file this is not, or bytes fewer or more than the header's size: a write cut short by a
 * crash, a damaged disk, a hand edit) is refused.
 */
async function readHeader({ fh, fileSize }: OpenObject, name: string): Promise<{ head: ObjectHead; bodyStart: number }> {
  const buf = Buffer.alloc(HEADER_PEEK);
  const { bytesRead } = await fh.read(buf, 0, HEADER_PEEK, 0);
  const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
  if (nl < 0) throw new UnreadableObjectError('no_header');
  let head: unknown;
  try {
    head = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch {
    throw new UnreadableObjectError('header_not_json');
  }
  if (!isHead(head)) throw new UnreadableObjectError('header_invalid');
  if (fileName(head.key) !== name) throw new UnreadableObjectError('name_mismatch');
  const bodyStart = nl + 1;
  const bodySize = fileSize - bodyStart;
  if (bodySize < head.size) throw new UnreadableObjectError('body_short');
  if (bodySize > head.size) throw new UnreadableObjectError('body_long');
  return { head, bodyStart };
}

/**
 * Opens an object file for reading, or undefined when there is none. Only a regular file is an
 * object, as this store writes them: a symlink is not followed (a key never reads a file outside
 * the bucket through one planted there), a FIFO or device is opened without waiting for a
 * writer, then refused like a directory, and a socket, which cannot be opened (ENXIO), is absent
 * too. A file this process may not open is unreadable.
 */
async function openObject(path: string): Promise<OpenObject | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = errorCode(err);
    if (missing(err) || code === 'ELOOP' || code === 'ENXIO') return undefined;
    if (code === 'EACCES' || code === 'EPERM') throw new UnreadableObjectError(code);
    throw err;
  }
  let opened: OpenObject | undefined;
  try {
    const stat = await fh.stat();
    if (stat.isFile()) opened = { fh, fileSize: stat.size };
  } finally {
    if (!opened) await fh.close();
  }
  return opened;
}

async function readHeaderOf(dir: string, name: string): Promise<ObjectHead | undefined> {
  const opened = await openObject(join(dir, name));
  if (!opened) return undefined;
  try {
    return (await readHeader(opened, name)).head;
  } finally {
    await opened.fh.close();
  }
}

/**
 * Removes the temp files of puts that never reached their rename (the gateway was killed between
 * the two). A file that cannot be removed is reported and left: the store opens anyway.
 */
async function removeStaleTemps(dir: string, logger: Logger | undefined): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith(TEMP_PREFIX)) continue;
    try {
      const stat = await lstat(join(dir, entry));
      const age = now - stat.mtimeMs;
      if (!stat.isFile() || age < STALE_TEMP_MS) continue;
      await rm(join(dir, entry));
      logger?.info({ event_type: 'mcp_bucket_temp_removed', file: entry, age_s: Math.round(age / 1000) }, 'stale temp file removed from the local bucket');
    } catch (err) {
      if (missing(err)) continue; // another gateway sharing the directory removed it first
      logger?.warn({ event_type: 'mcp_bucket_temp_not_removed', file: entry, err_code: errorCode(err) }, 'stale temp file in the local bucket not removed');
    }
  }
}

/** A store call that reads object files, as counted when one is unreadable. */
export type DiskReadOperation = 'list' | 'get' | 'head';

/** Options of {@link createDiskStore}. */
export interface DiskStoreOptions {
  /**
   * Where an unreadable object file is reported (one warning line each time a call meets one),
   * and stale temp files removed at open.
   */
  logger?: Logger;
  /** Called once each time a call meets an unreadable object file, for a metric. */
  onUnreadable?: (operation: DiskReadOperation) => void;
}

/** An ObjectStore in a local directory: the embedded default when no S3 bucket is configured. */
export async function createDiskStore(dir: string, options: DiskStoreOptions = {}): Promise<ObjectStore> {
  // 0700: the documents are readable by the gateway alone, whatever the data directory allows.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await removeStaleTemps(dir, options.logger);

  /**
   * Reports an object file a call cannot read, by file name only (keys are arguments, never
   * logged), and passes on any other error.
   */
  function unreadable(err: unknown, operation: DiskReadOperation, name: string): boolean {
    if (errorCode(err) !== 'OBJECT_UNREADABLE') return false;
    options.logger?.warn(
      { event_type: 'mcp_bucket_object_unreadable', operation, file: name, reason: (err as UnreadableObjectError).reason },
      'object file in the local bucket cannot be read',
    );
    options.onUnreadable?.(operation);
    return true;
  }

  return {
    kind: 'disk',
    // Local disk has no transient failures worth retrying; every error is reported as is.
    isTransient: () => false,
    async exists(key) {
      const name = fileName(key);
      try {
        return (await readHeaderOf(dir, name)) !== undefined;
      } catch (err) {
        unreadable(err, 'head', name);
        throw err;
      }
    },
    async list(prefix, limit, continuation) {
      // Keys compare as UTF-8 bytes, the order S3 lists in; JavaScript's < compares UTF-16 units,
      // which puts U+E000..U+FFFF after the characters beyond U+FFFF.
      const after = continuation ? Buffer.from(continuation, 'base64url') : undefined;
      const summaries: ObjectSummary[] = [];
      for (const entry of await readdir(dir)) {
        if (!entry.endsWith(SUFFIX)) continue;
        let h: ObjectHead | undefined; // undefined when deleted while listing
        try {
          h = await readHeaderOf(dir, entry);
        } catch (err) {
          // One bad file does not hide the others: it is left out, and reported.
          if (unreadable(err, 'list', entry)) continue;
          throw err;
        }
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
      const name = fileName(key);
      let opened: OpenObject | undefined;
      try {
        opened = await openObject(join(dir, name));
        if (!opened) return undefined;
        const { head: meta, bodyStart } = await readHeader(opened, name);
        if (meta.size > maxBytes) throw new ObjectTooLargeError(meta.size);
        return { head: meta, body: opened.fh.createReadStream({ start: bodyStart, autoClose: true }) };
      } catch (err) {
        await opened?.fh.close();
        unreadable(err, 'get', name);
        throw err;
      }
    },
    async put(key, body, contentType) {
      const etag = `"${createHash('md5').update(body).digest('hex')}"`;
      const meta: ObjectHead = { key, size: body.length, content_type: contentType, last_modified: new Date().toISOString(), etag };
      const tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        // Header and body written one after the other: no copy of the object to join them.
        await writeFile(tmp, [Buffer.from(JSON.stringify(meta) + '\n'), body], { flush: true });
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
