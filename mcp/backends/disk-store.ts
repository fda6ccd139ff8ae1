import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
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

/**
 * Which file a name held when it was read: a put renames a new file (a new inode) over the name,
 * and a file changed in place has a new size or modification time. Two files of one name with all
 * three equal would need an inode number reused at the same nanosecond and size.
 */
function identityOf(stat: BigIntStats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
}

/** An object file opened for reading, its size in bytes when opened, and which file it is. */
interface OpenObject {
  fh: FileHandle;
  fileSize: number;
  identity: string;
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
    const stat = await fh.stat({ bigint: true });
    if (stat.isFile()) opened = { fh, fileSize: Number(stat.size), identity: identityOf(stat) };
  } finally {
    if (!opened) await fh.close();
  }
  return opened;
}

/** The header of an object file and which file it was read from; undefined when there is none. */
async function readHeaderOf(dir: string, name: string): Promise<{ head: ObjectHead; identity: string } | undefined> {
  const opened = await openObject(join(dir, name));
  if (!opened) return undefined;
  try {
    return { head: (await readHeader(opened, name)).head, identity: opened.identity };
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

/** What a listing knows of one object file without opening it, and which file that was. */
interface Listed {
  summary: ObjectSummary;
  keyBytes: Buffer;
  identity: string;
}

/**
 * The listing's memory of the bucket: per file name, the summary of the object it held when last
 * read. A file's name is the SHA-256 of its key, so once read the key of a name is known for good
 * (a file holding another key is refused as name_mismatch); only its size and date change, with
 * the file. A listing then picks its page by key from the names alone, and opens no file but
 * those it has never read; of the page it checks each file's identity (one lstat), and reads again
 * only one that changed (put by another gateway sharing the directory, damaged, edited). Held:
 * one entry per object (its key, twice, and some 100 bytes).
 */
class ListingIndex {
  readonly #dir: string;
  readonly #unreadable: (err: unknown, name: string) => boolean;
  readonly #entries = new Map<string, Listed>();

  constructor(dir: string, unreadable: (err: unknown, name: string) => boolean) {
    this.#dir = dir;
    this.#unreadable = unreadable;
  }

  known(name: string): Listed | undefined {
    return this.#entries.get(name);
  }

  remember(name: string, head: ObjectHead, identity: string): Listed {
    const entry = { summary: { key: head.key, size: head.size, last_modified: head.last_modified }, keyBytes: Buffer.from(head.key), identity };
    this.#entries.set(name, entry);
    return entry;
  }

  forget(name: string): void {
    this.#entries.delete(name);
  }

  /**
   * Forgets the names no longer in the directory and reads the files never read (or unreadable
   * when last met, reported again); returns the names read now.
   */
  async learnNew(names: readonly string[]): Promise<Set<string>> {
    const present = new Set(names);
    for (const name of this.#entries.keys()) if (!present.has(name)) this.#entries.delete(name);
    const fresh = new Set<string>();
    for (const name of names) if (!this.#entries.has(name) && (await this.#read(name))) fresh.add(name);
    return fresh;
  }

  /** The entry of a file as it is now: the one known while the file is unchanged, else read again. */
  async current(name: string, entry: Listed): Promise<Listed | undefined> {
    let stat: BigIntStats;
    try {
      stat = await lstat(join(this.#dir, name), { bigint: true });
    } catch (err) {
      if (!missing(err)) throw err;
      this.#entries.delete(name); // deleted since the directory was read
      return undefined;
    }
    return stat.isFile() && identityOf(stat) === entry.identity ? entry : this.#read(name);
  }

  /** Reads a file's header; undefined, forgotten, when it is gone, no object, or unreadable (reported). */
  async #read(name: string): Promise<Listed | undefined> {
    let read: Awaited<ReturnType<typeof readHeaderOf>>;
    try {
      read = await readHeaderOf(this.#dir, name);
    } catch (err) {
      this.#entries.delete(name);
      // One bad file does not hide the others: it is left out, and reported.
      if (this.#unreadable(err, name)) return undefined;
      throw err;
    }
    if (!read) this.#entries.delete(name);
    return read && this.remember(name, read.head, read.identity);
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

  const listing = new ListingIndex(dir, (err, name) => unreadable(err, 'list', name));

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
      const inRange = (e: Listed) => e.summary.key.startsWith(prefix) && (after === undefined || Buffer.compare(e.keyBytes, after) > 0);
      const names = (await readdir(dir)).filter((entry) => entry.endsWith(SUFFIX));
      const fresh = await listing.learnNew(names);
      const candidates = names
        .flatMap((name) => {
          const entry = listing.known(name);
          return entry && inRange(entry) ? [{ name, entry }] : [];
        })
        .sort((a, b) => Buffer.compare(a.entry.keyBytes, b.entry.keyBytes));
      // Only the files of the page (and one more, to know whether it is the last) are looked at.
      const page: ObjectSummary[] = [];
      for (const { name, entry } of candidates) {
        if (page.length > limit) break;
        const now = fresh.has(name) ? entry : await listing.current(name, entry);
        if (now) page.push(now.summary);
      }
      const last = page[limit - 1];
      return page.length > limit && last
        ? { objects: page.slice(0, limit), next_continuation: Buffer.from(last.key).toString('base64url') }
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
        // Taken before the rename: after it, another put may have renamed its own file over the name.
        const identity = identityOf(await lstat(tmp, { bigint: true }));
        await rename(tmp, join(dir, fileName(key)));
        listing.remember(fileName(key), meta, identity);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return meta;
    },
    async delete(key) {
      await rm(join(dir, fileName(key)), { force: true });
      listing.forget(fileName(key));
    },
    async close() {},
  };
}
