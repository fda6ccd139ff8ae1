import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Calls `onChange` (debounced) when any of `files` changes. Watches the directories, not the
 * files: editors and `kubectl`-mounted ConfigMaps replace files by rename, which a file watch
 * would miss after the first change.
 */
export class PolicyWatcher {
  readonly #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(files: readonly string[], onChange: () => void, debounceMs = 100) {
    const byDir = new Map<string, Set<string>>();
    for (const file of files) {
      const names = byDir.get(dirname(file)) ?? new Set<string>();
      names.add(basename(file));
      byDir.set(dirname(file), names);
    }
    for (const [dir, names] of byDir) {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        // Kubernetes swaps a ..data symlink: any change in the directory may be ours.
        if (name !== null && !names.has(name) && !name.startsWith('..')) return;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(onChange, debounceMs);
      });
      watcher.on('error', () => undefined);
      this.#watchers.push(watcher);
    }
  }

  close(): void {
    clearTimeout(this.#timer);
    for (const watcher of this.#watchers) watcher.close();
  }
}
