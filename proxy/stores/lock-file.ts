import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';

/** A lock file as found on disk. */
export interface LockHolder {
  /** What its taker wrote into it. */
  readonly content: string;
  /** Milliseconds since its taker wrote it. */
  readonly ageMs: number;
  /** This very file (inode and modification time): another lock file at the same path has another id. */
  readonly id: string;
}

/** A lock this process took; `release` removes it unless another process has taken it over. */
export interface HeldLock {
  readonly release: () => void;
}

function isErrno(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** The lock file at `path`, or undefined when there is none. */
export function readLock(path: string): LockHolder | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    return { content: readFileSync(fd, 'utf8'), ageMs: Date.now() - Number(stat.mtimeMs), id: `${stat.ino}-${stat.mtimeNs}` };
  } finally {
    closeSync(fd);
  }
}

/**
 * Takes the lock file `path` with `content`, or returns the holder that keeps it. A holder that
 * `isStale` says is gone (its process died holding it) is taken over; one that was only stalled
 * that long and goes on afterwards is not stopped, so `isStale` must not call a live holder gone.
 *
 * Synchronous: no other task of this process runs between a check and the step that relies on it.
 */
export function tryLock(path: string, content: string, isStale: (holder: LockHolder) => boolean): HeldLock | LockHolder {
  // Written whole, then linked into place: a reader never sees a lock file half written.
  const mine = `${path}.${randomUUID()}.tmp`;
  writeFileSync(mine, content, { mode: 0o600, flag: 'wx' });
  try {
    const holder = claim(path, mine, isStale);
    if (holder) return holder;
    const id = readLock(mine)?.id;
    return {
      release: () => {
        try {
          if (readLock(path)?.id === id) unlinkSync(path);
        } catch (error) {
          if (!isErrno(error, 'ENOENT')) throw error;
        }
      },
    };
  } finally {
    unlinkSync(mine);
  }
}

/**
 * Makes `path` a link to the file `mine`; returns undefined once done, or the live holder.
 *
 * Removing a stale lock and then creating one is not safe: two processes that found the same
 * stale lock would both remove it, the second removing the lock the first had just made, and
 * both would go on as its holder. So a stale lock is replaced only by the one process that
 * creates the claim file `path.ID` (ID names that stale file; link() creates a name for one
 * process only), and only while that stale file is still in place. A process that died between
 * its claim and the replacement left a stale claim file, which is taken over the same way.
 */
function claim(path: string, mine: string, isStale: (holder: LockHolder) => boolean): LockHolder | undefined {
  for (;;) {
    try {
      linkSync(mine, path);
      return undefined;
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
    const holder = readLock(path);
    // Released between the two steps: try again at once.
    if (!holder) continue;
    if (!isStale(holder)) return holder;
    const claimFile = `${path}.${holder.id}`;
    const rival = claim(claimFile, mine, isStale);
    if (rival) return rival;
    if (readLock(path)?.id === holder.id) {
      renameSync(claimFile, path);
      return undefined;
    }
    // The stale file went before the claim (another claimer replaced it and its claim file is
    // gone): this claim is late and is given up.
    unlinkSync(claimFile);
  }
}
