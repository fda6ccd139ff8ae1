import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { checkPolicies } from '../../proxy/policy/tooling/check.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { MAX_LISTED_PROBLEMS } from '../../proxy/policy/validate-file.js';
import { CLEAN_MCP, CLEAN_RBAC, CLEAN_SERVICE, policyDir } from './fixtures.js';

/** The diagnostics of one rule in a directory, as "file:line:col severity". */
function findings(dir: string, rule: string): { file: string; line: number; column: number; severity: string; message: string }[] {
  return checkPolicies([dir]).diagnostics.filter((d) => d.rule === rule).map((d) => ({ file: d.file.slice(dir.length + 1), line: d.line, column: d.column, severity: d.severity, message: d.message }));
}

describe('policy check: the clean fixture', () => {
  it('finds nothing in it (every rule below has this as its passing example)', () => {
    const result = checkPolicies([policyDir()]);
    assert.deepEqual(result.diagnostics, []);
    assert.equal(result.files.length, 3);
  });
});

// Each rule: a failing example (one edit of the clean fixture) with the position it must point at.
const RULES: { rule: string; severity: 'error' | 'warning'; files: Parameters<typeof policyDir>[0]; at: string; message: RegExp }[] = [
  { rule: 'unknown-method', severity: 'error', files: { rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_documnet, list_documents]') }, at: 'rbac.yaml:7:13', message: /'get_documnet', which no service serves.*did you mean 'get_document'/ },
  { rule: 'unknown-method', severity: 'error', files: { rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_document, list_documents]\n    deny: [delete_documents]') }, at: 'rbac.yaml:8:12', message: /this deny never applies/ },
  // A role named by a number (an IdP's group id) is the key "1001" in the data, 1001 to yaml: located all the same.
  { rule: 'unknown-method', severity: 'error', files: { rbac: CLEAN_RBAC.replace('  tooler:', '  1001:\n    allow: [get_documnet]\n  tooler:') }, at: 'rbac.yaml:9:13', message: /role '1001' allows method 'get_documnet'/ },
  { rule: 'unknown-tool', severity: 'error', files: { rbac: CLEAN_RBAC.replace('allow: [s3_get_object]', 'allow: [s3_get_object, s3_put_objet]') }, at: 'rbac.yaml:10:30', message: /tool 's3_put_objet'/ },
  { rule: 'pattern-matches-nothing', severity: 'warning', files: { rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_document, list_documents, "report_*"]') }, at: 'rbac.yaml:7:43', message: /'report_\*' matches no method/ },
  { rule: 'deny-never-applies', severity: 'warning', files: { rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_document, list_documents]\n    deny: ["delete_*"]') }, at: 'rbac.yaml:8:12', message: /deny pattern 'delete_\*'/ },
  { rule: 'allow-shadowed', severity: 'warning', files: { rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_document, list_documents]\n    deny: ["list_*"]') }, at: 'rbac.yaml:7:27', message: /allows method 'list_documents' but its own deny 'list_\*'/ },
  { rule: 'role-allows-nothing', severity: 'warning', files: { rbac: `${CLEAN_RBAC}  ghost:\n    description: forgot the grants\n` }, at: 'rbac.yaml:16:3', message: /role 'ghost' allows nothing/ },
  { rule: 'arguments-without-grant', severity: 'warning', files: { rbac: CLEAN_RBAC.replace('allow: [s3_get_object]', 'allow: []') }, at: 'rbac.yaml:12:9', message: /does not allow that tool/ },
  { rule: 'unknown-role', severity: 'error', files: { service: CLEAN_SERVICE.replace('viewer: { points: 10 }', 'viewr: { points: 10 }') }, at: 'services/docs.yaml:8:5', message: /'viewr'.*did you mean 'viewer'/ },
  { rule: 'method-without-params', severity: 'warning', files: { service: CLEAN_SERVICE.replace('list_documents: { params: { type: object } }', 'list_documents: {}') }, at: 'services/docs.yaml:11:3', message: /no params schema/ },
  { rule: 'integrity-relaxed', severity: 'warning', files: { service: CLEAN_SERVICE.replace('list_documents: { params: { type: object } }', 'list_documents: { params: { type: object }, integrity: optional }').replace('methods:', 'integrity: { dpop: required }\nmethods:') }, at: 'services/docs.yaml:12:58', message: /method 'list_documents' relaxes integrity.dpop 'required' to 'optional'/ },
  { rule: 'unreachable-method', severity: 'warning', files: { service: `${CLEAN_SERVICE}  purge_all: { params: { type: object } }\n`, rbac: CLEAN_RBAC.replace('allow: ["*"]\n    tools', 'allow: [get_document, list_documents]\n    tools') }, at: 'services/docs.yaml:12:3', message: /no role may call 'purge_all'/ },
  { rule: 'unreachable-tool', severity: 'warning', files: { mcp: `${CLEAN_MCP}  s3_delete_object: {}\n`, rbac: CLEAN_RBAC.replace('allow: ["*"]\n  viewer', 'allow: [s3_get_object]\n  viewer') }, at: 'services/mcp.yaml:11:3', message: /no role may call tool 's3_delete_object'/ },
  { rule: 'schema', severity: 'error', files: { mcp: CLEAN_MCP.replace('tools/call: { access: per_tool, params: { type: object } }', 'tools/call: { params: { type: object } }') }, at: 'services/mcp.yaml:8:', message: /tools\/call must be per_tool: as rbac its tool would go unchecked/ },
  { rule: 'schema', severity: 'error', files: { service: CLEAN_SERVICE.replace('public_routes:', 'public:') }, at: 'services/docs.yaml:5:1', message: /unknown key 'public' \(did you mean 'public_routes'\?\)/ },
  { rule: 'schema-compile', severity: 'error', files: { service: CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { type: objekt } }') }, at: 'services/docs.yaml:10:27', message: /schema does not compile/ },
  { rule: 'public-route-exposes-rpc', severity: 'error', files: { service: CLEAN_SERVICE.replace('public_routes: [GET /health]', 'public_routes: [GET /health, GET /message]') }, at: 'services/docs.yaml:5:30', message: /would expose a JSON-RPC endpoint/ },
  { rule: 'yaml-syntax', severity: 'error', files: { rbac: `%YAML 1.1\n---\n${CLEAN_RBAC.replace('    allow: [get_document, list_documents]', '    <<: { allow: [delete_document] }\n    allow: [get_document, list_documents]')}` }, at: 'rbac.yaml:1:1', message: /YAML 1\.1 documents are not accepted/ },
  { rule: 'yaml-syntax', severity: 'error', files: { rbac: `${CLEAN_RBAC}# an alias expansion bomb\nx0: &a0 [1, 1, 1, 1, 1, 1, 1, 1]\nx1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\nx2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\nx3: [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n` }, at: 'rbac.yaml:1:1', message: /alias/i },
  { rule: 'duplicate-key', severity: 'error', files: { rbac: CLEAN_RBAC.replace('  tooler:', '  viewer:\n    allow: ["*"]\n  tooler:') }, at: 'rbac.yaml:8:3', message: /unique/i },
  // The data has one key "1" for both: yaml's own check, comparing values, took them for two.
  { rule: 'duplicate-key', severity: 'error', files: { rbac: CLEAN_RBAC.replace('  tooler:', '  1:\n    deny: ["*"]\n  "1":\n    allow: ["*"]\n  tooler:') }, at: 'rbac.yaml:10:3', message: /Map keys must be unique: '1' is given twice/ },
  { rule: 'yaml-syntax', severity: 'error', files: { rbac: CLEAN_RBAC.replace('    allow: [get_document, list_documents]', '    allow: [get_document, list_documents]\n    ? [deny]\n    : x') }, at: 'rbac.yaml:8:7', message: /a map key must be a name, not a collection or an alias/ },
  { rule: 'yaml-syntax', severity: 'error', files: { service: CLEAN_SERVICE.replace('methods:', 'methods: [') }, at: 'services/docs.yaml', message: /./ },
  { rule: 'file-not-found', severity: 'error', files: { service: CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc.json } }') }, at: 'services/docs.yaml:10:35', message: /file not found: .*schemas\/doc\.json/ },
  { rule: 'file-not-found', severity: 'error', files: { service: CLEAN_SERVICE.replace('rbac: ../rbac.yaml', 'rbac: ../services') }, at: 'services/docs.yaml:2:7', message: /cannot read .*services: EISDIR/ },
  { rule: 'schema', severity: 'error', files: { mcp: CLEAN_MCP.replace('  tools/call:', '  call: { access: per_tool, params: { type: object } }\n  tools/call:') }, at: 'services/mcp.yaml:8:19', message: /per_tool is the access of tools\/call only.*not of 'call'/ },
  { rule: 'not-a-policy', severity: 'error', files: { extra: { 'notes.yaml': 'hello: world\n' } }, at: 'notes.yaml:1:1', message: /neither a service policy/ },
];

describe('policy check: each rule fails on its example, at the right place', () => {
  for (const { rule, severity, files, at, message } of RULES) {
    it(`${rule}: ${at} ${message.source.slice(0, 40)}`, () => {
      const dir = policyDir(files);
      const paths = rule === 'not-a-policy' ? [join(dir, 'notes.yaml')] : [dir];
      const found = checkPolicies(paths).diagnostics.filter((d) => d.rule === rule).map((d) => ({ ...d, file: d.file.slice(dir.length + 1) }));
      const hit = found.find((d) => `${d.file}:${d.line}:${d.column}`.startsWith(at) && message.test(d.message));
      assert.ok(hit, `expected ${rule} at ${at} matching ${message}; got ${JSON.stringify(found)} (all: ${JSON.stringify(checkPolicies(paths).diagnostics.map((d) => `${d.rule} ${d.line}:${d.column} ${d.message}`))})`);
      assert.equal(hit.severity, severity);
    });
  }
  it('not-a-policy: a named directory with no policy file in it (a CI job checking the wrong path)', async () => {
    const dir = policyDir({ extra: { 'elsewhere/notes.yaml': 'hello: world\n' } });
    assert.deepEqual(checkPolicies([join(dir, 'elsewhere')]).diagnostics.map((d) => `${d.rule} ${d.line}:${d.column} ${d.message}`), ['not-a-policy 1:1 no policy file (a service policy or an rbac file) in this directory']);
    assert.equal(await policyCommand(['check', join(dir, 'elsewhere')], bufferIo()), 1);
  });
  it('lints the rbac file against every service using it, when one service file or the rbac file alone is named', () => {
    // A pre-commit hook names the files changed: the other service's methods are served all the same.
    const clean = policyDir();
    assert.deepEqual(checkPolicies([join(clean, 'services', 'docs.yaml')]).diagnostics, []);
    assert.deepEqual(checkPolicies([join(clean, 'services', 'mcp.yaml')]).diagnostics, []);
    const misspelt = policyDir({ rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_document, list_documents]\n    deny: [delete_documents]') });
    const named = checkPolicies([join(misspelt, 'rbac.yaml')]).diagnostics.map((d) => `${d.rule} ${d.line}:${d.column}`);
    assert.deepEqual(named, ['unknown-method 8:12']);
  });
  it(`lists the first ${MAX_LISTED_PROBLEMS} schema problems of a file, and how many more there are`, () => {
    const keys = Array.from({ length: MAX_LISTED_PROBLEMS + 10 }, (_, index) => `    k${index}: 1\n`).join('');
    const dir = policyDir({ rbac: CLEAN_RBAC.replace('    allow: [get_document, list_documents]\n', `    allow: [get_document, list_documents]\n${keys}`) });
    const found = findings(dir, 'schema');
    assert.equal(found.length, MAX_LISTED_PROBLEMS + 1);
    assert.deepEqual(found[0], { file: 'rbac.yaml', line: 1, column: 1, severity: 'error', message: `10 more problems not listed (the first ${MAX_LISTED_PROBLEMS} are)` });
    assert.match(found[1]?.message ?? '', /unknown key 'k0'/);
  });
  it('does not walk schemas/ and tests/', () => {
    const dir = policyDir({ extra: { 'tests/cases.yaml': 'cases: []\n', 'schemas/x.yaml': 'type: object\n' } });
    assert.deepEqual(checkPolicies([dir]).diagnostics, []);
    assert.deepEqual(findings(dir, 'not-a-policy'), []);
  });
});

describe('ca-a2a policy check (command)', () => {
  it('prints compiler-style lines and exits 1 on an error', async () => {
    const dir = policyDir({ rbac: CLEAN_RBAC.replace('allow: [get_document, list_documents]', 'allow: [get_documnet, list_documents]') });
    const io = bufferIo();
    assert.equal(await policyCommand(['check', dir], io), 1);
    assert.match(io.stdout, /rbac\.yaml:7:13: error unknown-method: role 'viewer' allows method 'get_documnet'/);
    assert.match(io.stdout, /FAIL: 3 files checked .* 1 error, 0 warnings/);
  });

  it('exits 0 on warnings, 1 with --strict', async () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('list_documents: { params: { type: object } }', 'list_documents: {}') });
    assert.equal(await policyCommand(['check', dir], bufferIo()), 0);
    assert.equal(await policyCommand(['check', '--strict', dir], bufferIo()), 1);
  });

  it('gives CI a JSON report', async () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('viewer: { points: 10 }', 'viewr: { points: 10 }') });
    const io = bufferIo();
    assert.equal(await policyCommand(['check', '--format', 'json', dir], io), 1);
    const report = JSON.parse(io.stdout) as { ok: boolean; errors: number; diagnostics: { rule: string; line: number; column: number; severity: string }[] };
    assert.equal(report.ok, false);
    assert.equal(report.errors, 1);
    assert.deepEqual(report.diagnostics.map((d) => [d.rule, d.line, d.column, d.severity]), [['unknown-role', 8, 5, 'error']]);
  });

  it('passes every shipped policy and every documented example, strictly', async () => {
    const io = bufferIo();
    const status = await policyCommand(['check', '--strict', 'policies', 'docs/examples'], io);
    assert.equal(status, 0, io.stdout);
    assert.match(io.stdout, /^ok: \d+ files checked/m);
  });
});
