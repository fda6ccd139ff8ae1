import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { loadPolicy } from '../../proxy/policy/load.js';
import { explain } from '../../proxy/policy/tooling/explain.js';
import { accessMatrix, grants, matrixJson } from '../../proxy/policy/tooling/matrix.js';
import { SHIPPED_SERVICES, shippedPolicyFile, type ShippedService } from '../../proxy/services.js';
import { DOC_ID, rpc, startHarness, type Harness } from '../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';

const SERVICES = Object.keys(SHIPPED_SERVICES) as ShippedService[];
const SNAPSHOT = new URL('__snapshots__/access-matrix.json', import.meta.url);

describe('access matrix of the shipped policies', () => {
  const matrices = SERVICES.map((service) => matrixJson(accessMatrix(loadPolicy(shippedPolicyFile(service)))));

  it('matches the golden snapshot (UPDATE_SNAPSHOTS=1 rewrites it; review the diff like code)', () => {
    const text = `${JSON.stringify(matrices, null, 2)}\n`;
    if (process.env.UPDATE_SNAPSHOTS === '1') writeFileSync(SNAPSHOT, text);
    // A missing snapshot is a failure, not a fresh golden file: otherwise deleting it passes.
    assert.ok(existsSync(SNAPSHOT), 'no golden snapshot: UPDATE_SNAPSHOTS=1 writes it');
    assert.equal(text, readFileSync(SNAPSHOT, 'utf8'), 'access matrix changed: run `npx ca-a2a policy diff` to review, then UPDATE_SNAPSHOTS=1 npm test');
  });

  it('holds the seed: explicit denies of the orchestrator, admin everywhere', () => {
    const archivist = matrices.find((m) => m.service === 'archivist');
    assert.equal(archivist?.methods.delete_document?.orchestrator, 'deny');
    for (const matrix of matrices) {
      for (const row of [...Object.values(matrix.methods), ...Object.values(matrix.tools)]) assert.equal(row.admin, 'allow');
    }
  });
});

// Every role × method/tool of every shipped service, through a real sidecar with a token
// carrying that role: 403 exactly where the matrix (and explain) say the role is refused.
describe('matrix and explain agree with the running sidecar', () => {
  let issuer: TestIssuer;
  before(async () => {
    issuer = await startTestIssuer();
  });
  after(() => issuer.close());

  for (const service of SERVICES) {
    it(`${service}: every role × every method and tool`, async () => {
      const policy = loadPolicy(shippedPolicyFile(service));
      const matrix = accessMatrix(policy);
      const perTool = [...policy.methods.values()].find((method) => method.access === 'per_tool')?.name;
      const jsonrpcPath = [...policy.endpoints.values()].find((endpoint) => endpoint.kind === 'jsonrpc')?.path ?? '/message';
      const h: Harness = await startHarness({ service, issuer });
      try {
        const mismatches: string[] = [];
        for (const role of matrix.roles) {
          const token = await issuer.sign({ realm_access: { roles: [role] }, sub: `matrix-${role}`, azp: role });
          for (const row of matrix.rows) {
            const cell = row.cells[role] ?? 'none';
            const body = row.kind === 'tool' ? rpc(perTool ?? 'tools/call', { name: row.name, arguments: {} }) : rpc(row.name, { document_id: DOC_ID });
            const res = await h.call(body, { token, path: jsonrpcPath });
            const refused = res.status === 403;
            // allow-args cells depend on the arguments sent ({} here): explain is asked about those
            // arguments, schemas included, and must give the sidecar's status exactly.
            const restricted = cell === 'allow-args';
            const explained = restricted
              ? explain(policy, [role], { method: perTool ?? 'tools/call', tool: row.name, params: {} })
              : explain(policy, [role], row.kind === 'tool' ? { method: perTool ?? 'tools/call', tool: row.name } : { method: row.name });
            const expectRefused = restricted ? explained.status === 403 : !grants(cell);
            if (refused !== expectRefused || (restricted ? res.status !== explained.status : explained.allowed === expectRefused)) {
              mismatches.push(`${role} ${row.kind} ${row.name}: matrix ${cell}, explain ${explained.allowed ? 'allow' : explained.code}, sidecar ${res.status} ${String(res.json.error?.data?.reason ?? '')}`);
            }
            if (refused) assert.equal(res.json.error?.code, -32011, `${role} ${row.name}`);
          }
        }
        assert.deepEqual(mismatches, []);
      } finally {
        await h.close();
      }
    });
  }
});
