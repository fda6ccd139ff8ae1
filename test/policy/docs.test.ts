import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { renderFieldReference, spliceGenerated } from '../../proxy/policy/tooling/docs.js';
import { readPolicySchema } from '../../proxy/policy/validate-file.js';

const DOC = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');

describe('docs/policy.md', () => {
  it('holds the field reference exactly as `ca-a2a policy docs` generates it from the schemas', () => {
    assert.equal(spliceGenerated(DOC, renderFieldReference()), DOC, 'out of date: run npx ca-a2a policy docs --write docs/policy.md');
  });

  it('documents every top-level field of both policy formats', () => {
    for (const kind of ['service', 'rbac'] as const) {
      for (const field of Object.keys((readPolicySchema(kind) as { properties: Record<string, unknown> }).properties)) {
        assert.ok(DOC.includes(`| \`${field}\` |`), `${kind}: ${field}`);
      }
    }
  });

  it('links every example file it describes', () => {
    for (const file of ['examples/rbac.yaml', 'examples/services/reports.yaml', 'examples/services/documents.yaml', 'examples/services/mcp.yaml']) assert.ok(DOC.includes(file), file);
  });
});
