import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadPolicy } from '../../proxy/policy/load.js';
import { checkPolicies } from '../../proxy/policy/tooling/check.js';
import { explain } from '../../proxy/policy/tooling/explain.js';

const EXAMPLES = new URL('../../docs/examples/', import.meta.url).pathname;

describe('docs/examples', () => {
  it('pass policy check without a warning, like every shipped policy', () => {
    const result = checkPolicies([EXAMPLES, 'policies']);
    assert.deepEqual(result.diagnostics, []);
    assert.ok(result.files.length >= 11);
  });

  it('do what the worked examples say', () => {
    const reports = loadPolicy(`${EXAMPLES}services/reports.yaml`);
    assert.equal(reports.mode, 'dry-run');
    assert.equal(explain(reports, ['viewer'], { method: 'get_report' }).allowed, true);
    assert.equal(explain(reports, ['viewer'], { method: 'list_reports' }).code, 'authz.method_denied');
    const documents = loadPolicy(`${EXAMPLES}services/documents.yaml`);
    assert.equal(explain(documents, ['auditor', 'admin'], { method: 'delete_document' }).code, 'authz.explicit_deny');
    const mcp = loadPolicy(`${EXAMPLES}services/mcp.yaml`);
    assert.equal(explain(mcp, ['archive-reader'], { method: 'tools/call', tool: 's3_get_object', params: { key: 'archive/2024/x.pdf' } }).allowed, true);
    assert.equal(explain(mcp, ['archive-reader'], { method: 'tools/call', tool: 's3_get_object', params: { key: 'uploads/x.pdf' } }).code, 'authz.arguments_denied');
  });
});
