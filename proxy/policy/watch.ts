import { realpathSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** One watched directory: its watcher, and which directory (device and inode) it watches. */
interface WatchedDir {
  readonly watcher: FSWatcher;
  readonly identity: string | undefined;
}

// Names a policy may come to be made of (a `$ref` schema created after the reload that missed it),
// beside the names of its files, whatever they end with. Editors' swap and backup files are
// neither, so editing costs no reload per autosave.
const POLICY_FILE = /\.(ya?ml|json)$/i;

/**
 * Calls `onChange` (debounced) when anything may have changed in the policy: a YAML or JSON
 * entry of a directory that holds one of its files, or the file a symlink of it resolves to (a
 * file edited in place, or replaced by rename, as editors and
 * `kubectl`-mounted ConfigMaps do, a `$ref` file created after the reload that missed it),
 * Kubernetes' `..data` symlink swap, or the directory itself swapped for another (a release
 * directory behind a symlink). The reload decides whether the content changed.
 *
 * Watchers live across reloads: `update` adds and drops directories as the policy's files
 * change, so an edit that lands while a reload runs is still seen and causes another reload.
 * A watch made by `update` (a directory new to the policy, or one swapped for another) starts
 * after the reload read its files, so it causes one more reload: an edit in between is not lost.
 */
export class PolicyWatcher {
  readonly #onChange: () => void;
  readonly #debounceMs: number;
  readonly #dirs = new Map<string, WatchedDir>();
  /** A directory's parent, watched for the directory's own name (a swap of it), by parent and names. */
  readonly #parents = new Map<string, FSWatcher>();
  /**
   * Directories their parent saw deleted, made or renamed since the last update: watched anew,
   * since a watch follows the directory deleted, not the one made again under its name (whose
   * inode number may well be the same).
   */
  readonly #replaced = new Set<string>();
  /**
   * The names of the policy's files in each watched directory: a file named without .yaml (a
   * ConfigMap key, /etc/ca-a2a/policy) is the policy too, and an edit of it was not seen.
   */
  #names = new Map<string, ReadonlySet<string>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(files: readonly string[], onChange: () => void, debounceMs = 100) {
    this.#onChange = onChange;
    this.#debounceMs = debounceMs;
    this.#update(files);
  }

  /**
   * Watches the directories of `files`, and only those. One swapped since it was watched (another
   * directory behind a symlink, or one deleted and made again under the same name) is watched anew.
   */
  update(files: readonly string[]): void {
    const added = this.#update(files);
    if (added) this.#changed();
  }

  #update(files: readonly string[]): boolean {
    let added = false;
    this.#names = namesByDirectory(files);
    const dirs = new Set(this.#names.keys());
    for (const [dir, watched] of this.#dirs) {
      if (dirs.has(dir) && !this.#replaced.has(dir) && identity(dir) === watched.identity) continue;
      watched.watcher.close();
      this.#dirs.delete(dir);
    }
    this.#replaced.clear();
    for (const dir of dirs) {
      if (this.#dirs.has(dir)) continue;
      // Taken before the watch starts: a swap in between is then seen as one by the next update.
      const watched = identity(dir);
      const watcher = this.#watch(dir, (name) => name === null || POLICY_FILE.test(name) || name.startsWith('..') || this.#names.get(dir)?.has(name) === true);
      if (watcher) {
        this.#dirs.set(dir, { watcher, identity: watched });
        added = true;
      }
    }
    const parents = new Map<string, Set<string>>();
    for (const dir of dirs) {
      const names = parents.get(dirname(dir)) ?? new Set<string>();
      names.add(basename(dir));
      parents.set(dirname(dir), names);
    }
    // Keyed by parent and the names watched in it: an unchanged watch is kept, not made anew, so
    // no swap of a directory is missed while a reload runs (as for the directories above).
    const wanted = new Map([...parents].map(([parent, names]) => [`${parent}\0${[...names].sort().join('\0')}`, { parent, names }]));
    for (const [key, watcher] of this.#parents) {
      if (wanted.has(key)) continue;
      watcher.close();
      this.#parents.delete(key);
    }
    for (const [key, { parent, names }] of wanted) {
      if (this.#parents.has(key)) continue;
      const watcher = this.#watch(parent, (name) => {
        const replaced = name === null ? [...names] : names.has(name) ? [name] : [];
        for (const each of replaced) this.#replaced.add(join(parent, each));
        return replaced.length > 0;
      });
      if (watcher) {
        this.#parents.set(key, watcher);
        added = true;
      }
    }
    return added;
  }

  close(): void {
    clearTimeout(this.#timer);
    for (const { watcher } of this.#dirs.values()) watcher.close();
    for (const watcher of this.#parents.values()) watcher.close();
    this.#dirs.clear();
    this.#parents.clear();
  }

  #changed(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#onChange, this.#debounceMs);
  }

  /** Undefined when the directory cannot be watched now (gone mid-swap): the next update tries again. */
  #watch(dir: string, concerns: (name: string | null) => boolean): FSWatcher | undefined {
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (concerns(name)) this.#changed();
      });
    } catch {
      return undefined;
    }
    // A directory that disappears is seen by its parent's watch, then watched again by update.
    watcher.on('error', () => undefined);
    return watcher;
  }
}

/**
 * The directories whose entries make up the files, each with the files' names in it: the one a file
 * is named in, and, when it is a symlink, the one it resolves into (an edit in place there is not
 * an event of the link's directory).
 */
function namesByDirectory(files: readonly string[]): Map<string, ReadonlySet<string>> {
  const names = new Map<string, Set<string>>();
  const add = (path: string): void => {
    const dir = dirname(path);
    names.set(dir, (names.get(dir) ?? new Set()).add(basename(path)));
  };
  for (const file of files) {
    add(file);
    try {
      add(realpathSync(file));
    } catch {
      // Not there (yet): its directory is watched for it.
    }
  }
  return names;
}

/** The directory a path names now (device and inode, symlinks followed); undefined when there is none. */
function identity(dir: string): string | undefined {
  try {
    const stat = statSync(dir);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}
