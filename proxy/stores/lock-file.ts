import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, linkSync, openSync, readFileSync, readlinkSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';

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
 * The process table this process's pid is a number in: the boot, the pid namespace and the host
 * name. Two processes can tell whether the other runs by its pid only when this is the same for
 * both (not across containers, machines or a reboot). Undefined where /proc does not say.
 */
const PID_SPACE = ((): string | undefined => {
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${readlinkSync('/proc/self/ns/pid')} ${hostname()}`;
  } catch {
    return undefined;
  }
})();

/** What a lock's taker writes into it for `takerExited` to read: its pid, then its pid space. */
export function takerContent(): string {
  return `${process.pid}\n${PID_SPACE ?? ''}\n`;
}

/**
 * Whether the process that wrote `takerContent` into this lock has exited. Only a taker in this
 * process's pid space can be called exited, and only when no process has its pid: a lock from
 * another container or machine, or with content of another shape, never is (its age decides). A
 * dead taker's pid used again by a new process keeps the lock held until its age decides too.
 */
export function takerExited(holder: LockHolder): boolean {
  const [pid, space] = holder.content.split('\n');
  const id = Number(pid);
  if (PID_SPACE === undefined || space !== PID_SPACE || !Number.isInteger(id) || id <= 0) return false;
  try {
    process.kill(id, 0);
    return false;
  } catch (error) {
    // EPERM: it runs, as another user.
    return isErrno(error, 'ESRCH');
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
