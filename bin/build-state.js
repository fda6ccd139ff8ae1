// Whether the build in dist/ may run: it exists and no source it was made from is newer.
import { readFileSync, statSync } from 'node:fs';

/** @param {URL} root the project root, as a directory URL */
export function buildIsCurrent(root) {
  try {
    const built = statSync(new URL('dist/main.js', root)).mtimeMs;
    const inputs = JSON.parse(readFileSync(new URL('dist/inputs.json', root), 'utf8'));
    return inputs.every((file) => statSync(new URL(file, root)).mtimeMs <= built);
  } catch {
    return false;
  }
}
