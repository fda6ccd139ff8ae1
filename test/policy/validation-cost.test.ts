import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

// What validating a caller's params may cost the sidecar: bounded by the body, not by how many
// ways the body fails.
const POLICY = `${minimalPolicy('validation-cost')}  list_documents:
    params:
      type: object
      properties:
        ids: { type: array, items: { type: string } }
        name: { type: string, maxLength: 8, pattern: "^[a-z]+$" }
`;

describe('params validation stops at the first failure', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(POLICY) });
  });
  after(() => h.close());

  const errorsOf = async (params: unknown): Promise<unknown> => {
    const res = await h.call(rpc('list_documents', params), { token: await h.issuer.sign() });
    assert.equal(res.status, 400);
    return res.json.error?.data?.errors;
  };

  it('answers an array of a thousand wrong items with its first failing path, not one error per item', async () => {
    assert.deepEqual(await errorsOf({ ids: Array.from({ length: 1000 }, () => 1) }), ['/ids/0: must be string']);
  });

  it('does not run a pattern on a string its maxLength refused', async () => {
    assert.deepEqual(await errorsOf({ name: 'A'.repeat(100) }), ['/name: must NOT have more than 8 characters']);
  });
});
