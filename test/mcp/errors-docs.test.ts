import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { TOOL_ERRORS } from '../../mcp/errors.js';
import { TOOL_DEFINITIONS } from '../../mcp/tools/tool-definitions.js';

const doc = await readFile(new URL('../../docs/mcp.md', import.meta.url), 'utf8');

describe('docs/mcp.md stays in step with the code', () => {
  it('lists every error code with its HTTP status, and no dead code', () => {
    const section = doc.split(/^## Errors$/m)[1]?.split(/^## /m)[0] ?? '';
    const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    assert.deepEqual(
      rows.sort(),
      Object.entries(TOOL_ERRORS).map(([code, e]) => [code, e.status]).sort(),
    );
  });

  it('documents every tool', () => {
    const section = doc.split(/^## Tools$/m)[1]?.split(/^## /m)[0] ?? '';
    const documented = [...section.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual([...documented].sort(), TOOL_DEFINITIONS.map((d) => d.name).sort());
  });
});
