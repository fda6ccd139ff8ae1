import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
// Each test file runs in a process of its own: its directories go when it exits, passed or not.
process.once('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the system temp dir (ca-a2a-NAME-…), removed when the test process exits. */
export function tempDirSync(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ca-a2a-${name}-`));
  made.push(dir);
  return dir;
}
