import { randomUUID } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';

function isErrno(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** Whether a process with this id runs (EPERM: it does, as another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

function holderOf(lockFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

/** The lock files this process holds: its own pid in one it does not hold is a previous life's. */
const held = new Set<string>();

/**
 * Takes `DIR.lock` (beside DIR) for this process, or throws when a running process holds it.
 * PGlite keeps no lock of its own: two processes on one data directory each kept their own copy
 * of the database and the last to close overwrote the other's acknowledged writes. A lock left
 * by a process that no longer runs is taken over. Returns the release function.
 */
export function lockDirectory(dir: string): () => void {
  const lockFile = `${dir}.lock`;
  const mine = `${process.pid}\n`;
  // Written whole, then linked into place: a reader never sees an empty lock file.
  const tmp = `${lockFile}.${randomUUID()}.tmp`;
  writeFileSync(tmp, mine, { mode: 0o600, flag: 'wx' });
  try {
    for (let attempt = 0; ; attempt += 1) {
      try {
        linkSync(tmp, lockFile);
        break;
      } catch (error) {
        if (!isErrno(error, 'EEXIST') || attempt >= 2) throw error;
      }
      const holder = holderOf(lockFile);
      // A container restarted on a kept volume runs again as the same pid (often 1): a lock with
      // this pid that this process did not take was left by the process it replaced.
      const stale = holder === process.pid && !held.has(lockFile);
      if (holder !== undefined && !stale && isRunning(holder)) {
        throw Object.assign(
          new Error(`the embedded database ${dir} is in use by process ${holder}: give this one a data directory of its own (--data-dir), or stop that process`),
          { code: 'DATA_DIR_IN_USE' },
        );
      }
      // Left by a process that is gone (or unreadable): take it over.
      try {
        unlinkSync(lockFile);
      } catch (error) {
        if (!isErrno(error, 'ENOENT')) throw error;
      }
    }
  } finally {
    unlinkSync(tmp);
  }
  held.add(lockFile);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.delete(lockFile);
    try {
      if (readFileSync(lockFile, 'utf8') === mine) unlinkSync(lockFile);
    } catch {
      // Already gone.
    }
  };
}
