import { tryLock, type LockHolder } from '../lock-file.js';

/** Whether a process with this id runs (EPERM: it does, as another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function holderPid(holder: LockHolder): number | undefined {
  const pid = Number(holder.content.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
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
  const lock = tryLock(lockFile, `${process.pid}\n`, (holder) => {
    const pid = holderPid(holder);
    // A container restarted on a kept volume runs again as the same pid (often 1): a lock with
    // this pid that this process did not take was left by the process it replaced.
    return pid === undefined || (pid === process.pid && !held.has(lockFile)) || !isRunning(pid);
  });
  if (!('release' in lock)) {
    throw Object.assign(
      new Error(`the embedded database ${dir} is in use by process ${holderPid(lock)}: give this one a data directory of its own (--data-dir), or stop that process`),
      { code: 'DATA_DIR_IN_USE' },
    );
  }
  held.add(lockFile);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.delete(lockFile);
    lock.release();
  };
}
