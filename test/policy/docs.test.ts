import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { renderFieldReference, spliceGenerated } from '../../proxy/policy/tooling/docs.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
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

describe('ca-a2a policy docs (command)', () => {
  it('refuses an argument it does not take, and --write with --check, with exit 2 and nothing written', async () => {
    const cases: [string[], RegExp][] = [
      [['docs', 'docs/policy.md'], /^ca-a2a policy docs: Unexpected argument 'docs\/policy\.md'/],
      [['docs', '--check', 'docs/policy.md', 'extra'], /^ca-a2a policy docs: Unexpected argument 'extra'/],
      [['docs', '--write', 'docs/policy.md', '--check', 'docs/policy.md'], /^ca-a2a policy docs: give --write FILE or --check FILE, not both/],
    ];
    for (const [args, message] of cases) {
      const io = bufferIo();
      assert.equal(await policyCommand(args, io), 2, args.join(' '));
      assert.equal(io.stdout, '');
      assert.match(io.stderr, message);
    }
    assert.equal(readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8'), DOC);
  });
});
