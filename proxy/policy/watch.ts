import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** One watched directory: its watcher, and the real directory it watches. */
interface WatchedDir {
  readonly watcher: FSWatcher;
  readonly real: string;
}

// Names a policy may be made of: a file of it, or one it may come to need (a `$ref` schema created
// after the reload that missed it). Editors' swap and backup files are not, so editing costs no
// reload per autosave.
const POLICY_FILE = /\.(ya?ml|json)$/i;

/**
 * Calls `onChange` (debounced) when anything may have changed in the policy: a YAML or JSON
 * entry of a directory that holds one of its files (a file replaced by rename, as editors and
 * `kubectl`-mounted ConfigMaps do, a `$ref` file created after the reload that missed it),
 * Kubernetes' `..data` symlink swap, or the directory itself swapped for another (a release
 * directory behind a symlink). The reload decides whether the content changed.
 *
 * Watchers live across reloads: `update` adds and drops directories as the policy's files
 * change, so an edit that lands while a reload runs is still seen and causes another reload.
 */
export class PolicyWatcher {
  readonly #onChange: () => void;
  readonly #debounceMs: number;
  readonly #dirs = new Map<string, WatchedDir>();
  /** A directory's parent, watched for the directory's own name (a swap of it), by parent and names. */
  readonly #parents = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | undefined;

  constructor(files: readonly string[], onChange: () => void, debounceMs = 100) {
    this.#onChange = onChange;
    this.#debounceMs = debounceMs;
    this.update(files);
  }

  /** Watches the directories of `files`, and only those; one swapped since it was watched is watched again. */
  update(files: readonly string[]): void {
    const dirs = new Set(files.map((file) => dirname(file)));
    for (const [dir, watched] of this.#dirs) {
      if (dirs.has(dir) && realPath(dir) === watched.real) continue;
      watched.watcher.close();
      this.#dirs.delete(dir);
    }
    for (const dir of dirs) {
      if (this.#dirs.has(dir)) continue;
      const watcher = this.#watch(dir, (name) => name === null || POLICY_FILE.test(name) || name.startsWith('..'));
      if (watcher) this.#dirs.set(dir, { watcher, real: realPath(dir) });
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
      const watcher = this.#watch(parent, (name) => name === null || names.has(name));
      if (watcher) this.#parents.set(key, watcher);
    }
  }

  close(): void {
    clearTimeout(this.#timer);
    for (const { watcher } of this.#dirs.values()) watcher.close();
    for (const watcher of this.#parents.values()) watcher.close();
    this.#dirs.clear();
    this.#parents.clear();
  }

  /** Undefined when the directory cannot be watched now (gone mid-swap): the next update tries again. */
  #watch(dir: string, concerns: (name: string | null) => boolean): FSWatcher | undefined {
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (!concerns(name)) return;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(this.#onChange, this.#debounceMs);
      });
    } catch {
      return undefined;
    }
    // A directory that disappears is seen by its parent's watch, then watched again by update.
    watcher.on('error', () => undefined);
    return watcher;
  }
}

function realPath(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return dir;
  }
}
