import { fileURLToPath } from 'node:url';

// This file sits one folder below the project root, and so does every bundle of the build in
// dist/ (bin/build.js): '../' is the root whether the code runs from the sources or the build.
const ROOT = new URL('../', import.meta.url);

/** An absolute path inside the project: policies, schemas, migrations, samples. */
export function projectPath(relative: string): string {
  return fileURLToPath(new URL(relative, ROOT));
}
