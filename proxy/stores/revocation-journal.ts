import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { takerContent, takerExited, tryLock } from './lock-file.js';
import { toRevocation, type Revocation } from './revocation-set.js';
import type { AddResult, RevocationRecord, RevocationStore } from './revocation-store.js';

/** Lock waits and staleness; tests shorten them. */
export interface JournalOptions {
  /** How long a writer waits for the lock before the call fails (default 5 s). */
  readonly lockTimeoutMs?: number;
  /**
   * A lock file older than this was left by a crashed writer and is taken over (default 30 s).
   * One whose writer ran on this machine and has exited is taken over at once.
   */
  readonly staleLockMs?: number;
}

/**
 * The embedded durable store: one JSON line per revocation in a file of the data directory,
 * appended and fsynced (the file, then its directory) before `add` resolves. Every process on the
 * machine may open the same file (`ca-a2a revoke` beside a running `ca-a2a up`); writers
 * serialise on a lock file (`tryLock`: one writer alone takes over a lock whose writer has exited
 * or that is older than `staleLockMs`), readers need no lock because lines are only appended, and compaction replaces
 * the file by rename. Only a line with its end was fsynced before `add` resolved, so bytes after
 * the last line end (an append cut short by a crash, or NULs left by a power loss) were never
 * acknowledged: readers skip them and the next append cuts them off before writing. Any other
 * unreadable line fails the read (fail closed).
 */
export class JournalRevocationStore implements RevocationStore {
  readonly #file: string;
  readonly #lockTimeoutMs: number;
  readonly #staleLockMs: number;

  constructor(file: string, options: JournalOptions = {}) {
    const dir = dirname(file);
    const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A directory just made is there after a power loss only once the one holding it is synced.
    for (let made = dir; created !== undefined && made !== dirname(created); made = dirname(made)) {
      syncDirectorySync(dirname(made));
    }
    this.#file = file;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 5_000;
    this.#staleLockMs = options.staleLockMs ?? 30_000;
  }

  async add(record: RevocationRecord): Promise<AddResult> {
    return this.#locked(async () => {
      const { records, complete, size } = await this.#read();
      const r = record.revocation;
      // One expired by now counts as absent (RevocationStore.add): the line written replaces it.
      const known = r.kind === 'jti' ? records.find((x) => x.revocation.kind === 'jti' && x.revocation.jti === r.jti && x.revocation.expiresAt > record.revokedAt) : undefined;
      // Known until as late or later: nothing to write. Known until earlier: a line of the known
      // record (its who, when and why) with the later expiry, which readers take over the earlier.
      if (known !== undefined && known.revocation.expiresAt >= r.expiresAt) return { created: false, record: known };
      const kept = known === undefined ? record : { ...known, revocation: r };
      const { revokedAt, revokedBy, reason } = kept;
      const handle = await open(this.#file, 'a', 0o600);
      try {
        // Left in place, a torn tail would become a complete line that no reader can parse.
        if (complete < size) {
          await handle.truncate(complete);
          await handle.sync();
        }
        await handle.appendFile(`${JSON.stringify({ revocation: r, revokedAt, revokedBy, reason })}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      // The file may have just been created: its name must survive a power loss too.
      await syncDirectory(dirname(this.#file));
      return { created: known === undefined, record: kept };
    });
  }

  async active(nowSeconds: number): Promise<Revocation[]> {
    return (await this.#live(nowSeconds)).map((x) => x.revocation);
  }

  async list(nowSeconds: number, limit: number): Promise<RevocationRecord[]> {
    return (await this.#live(nowSeconds)).sort((a, b) => b.revokedAt - a.revokedAt).slice(0, limit);
  }

  async deleteExpired(nowSeconds: number): Promise<number> {
    return this.#locked(async () => {
      const { records } = await this.#read();
      const kept = records.filter((x) => x.revocation.expiresAt > nowSeconds);
      if (kept.length === records.length) return 0;
      const next = `${this.#file}.next`;
      const handle = await open(next, 'w', 0o600);
      try {
        await handle.writeFile(kept.map((x) => `${JSON.stringify(x)}\n`).join(''));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(next, this.#file);
      // Unsynced, a power loss could bring the old file back after later appends to the new one
      // were acknowledged, and lose them.
      await syncDirectory(dirname(this.#file));
      return records.length - kept.length;
    });
  }

  async close(): Promise<void> {}

  async #live(nowSeconds: number): Promise<RevocationRecord[]> {
    return (await this.#read()).records.filter((x) => x.revocation.expiresAt > nowSeconds);
  }

  /** The records of the complete lines; `complete` is their length in bytes, `size` the file's. */
  async #read(): Promise<{ records: RevocationRecord[]; complete: number; size: number }> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.#file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], complete: 0, size: 0 };
      throw error;
    }
    // Cut in bytes, not characters: `complete` is where `add` truncates, and 0x0a never occurs
    // inside a multi-byte UTF-8 character.
    const complete = bytes.lastIndexOf(0x0a) + 1;
    const lines = bytes.toString('utf8', 0, complete).split('\n').slice(0, -1);
    const records: RevocationRecord[] = [];
    lines.forEach((line, index) => {
      if (line === '') return;
      const record = parseRecord(line);
      if (record) records.push(record);
      else if (!isTornLine(lines, index)) {
        throw new Error(`${this.#file}:${index + 1}: not a revocation record`);
      }
    });
    return { records: laterPerJti(records), complete, size: bytes.length };
  }

  async #locked<T>(work: () => Promise<T>): Promise<T> {
    const lock = `${this.#file}.lock`;
    const deadline = Date.now() + this.#lockTimeoutMs;
    for (;;) {
      const attempt = tryLock(lock, takerContent(), (holder) => takerExited(holder) || holder.ageMs >= this.#staleLockMs);
      if ('release' in attempt) {
        try {
          return await work();
        } finally {
          attempt.release();
        }
      }
      if (Date.now() > deadline) throw new Error(`${lock} held by another writer for over ${this.#lockTimeoutMs} ms`);
      await sleep(10);
    }
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function syncDirectorySync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// Journals written before `add` cut torn tails off have them mid-file: the next append started a
// new line after one. Such a line is a prefix of a record and is followed by a complete record.
function isTornLine(lines: readonly string[], index: number): boolean {
  const line = lines[index] ?? '';
  return line.startsWith('{"revocation":') && parseRecord(lines[index + 1] ?? '') !== undefined;
}

function parseRecord(line: string): RevocationRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { revokedAt, revokedBy, reason } = value as Record<string, unknown>;
  const revocation = toRevocation((value as Record<string, unknown>).revocation);
  if (!revocation || typeof revokedAt !== 'number' || typeof revokedBy !== 'string') return undefined;
  if (reason !== undefined && typeof reason !== 'string') return undefined;
  return { revocation, revokedAt, revokedBy, reason };
}

/**
 * The records in file order, a jti written more than once (revoked again until later) only at its
 * line with the latest expiry.
 */
function laterPerJti(records: RevocationRecord[]): RevocationRecord[] {
  const latest = new Map<string, RevocationRecord>();
  for (const record of records) {
    const r = record.revocation;
    if (r.kind !== 'jti') continue;
    const known = latest.get(r.jti);
    if (known === undefined || known.revocation.expiresAt < r.expiresAt) latest.set(r.jti, record);
  }
  return records.filter((record) => record.revocation.kind !== 'jti' || latest.get(record.revocation.jti) === record);
}
