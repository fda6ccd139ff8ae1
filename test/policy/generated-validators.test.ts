import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('the precompiled policy-file validators (proxy/policy/schemas/validators.generated.cjs)', () => {
  it('match the service and rbac JSON Schemas (npm run gen:validators after editing one)', async () => {
    const code = await new Promise<number>((resolve) => {
      execFile(process.execPath, ['bin/gen-policy-validators.js', '--check'], { cwd: ROOT }, (error) => resolve(error ? Number(error.code ?? 1) : 0));
    });
    assert.equal(code, 0);
  });
});
