import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, rpc, startHarness, type Harness } from '../../helpers/harness.js';

describe('params layer (shipped schemas)', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ service: 'archivist' });
    token = await h.issuer.sign({ realm_access: { roles: ['admin'] } });
  });
  after(() => h.close());

  it('accepts {"document_id": UUID} as complete params of every document method', async () => {
    for (const method of ['archive_document', 'get_document', 'delete_document']) {
      assert.equal((await h.call(rpc(method, { document_id: DOC_ID }), { token })).status, 200, method);
    }
  });

  it('refuses a document_id that is not a UUID string, or missing, with 400 and -32602 and the failing path', async () => {
    for (const params of [{ document_id: 'not-a-uuid' }, { document_id: `urn:uuid:${DOC_ID}` }, { document_id: 42 }, {}, undefined, { document_id: DOC_ID, extra: 1 }]) {
      const count = h.upstream.requests.length;
      const res = await h.call(rpc('get_document', params), { token });
      assert.equal(res.status, 400, JSON.stringify(params));
      assert.equal(res.json.error?.code, -32602);
      assert.ok(Array.isArray(res.json.error?.data?.errors));
      assert.equal(h.upstream.requests.length, count);
    }
  });

  it('accepts {} and limits 1..100 for list_documents and refuses anything else', async () => {
    for (const params of [{}, { limit: 1 }, { limit: 100 }]) {
      assert.equal((await h.call(rpc('list_documents', params), { token })).status, 200, JSON.stringify(params));
    }
    for (const params of [{ limit: 0 }, { limit: 101 }, { limit: 2.5 }, { limit: '10' }]) {
      const res = await h.call(rpc('list_documents', params), { token });
      assert.equal(res.status, 400, JSON.stringify(params));
      assert.equal(res.json.error?.data?.reason, 'params.invalid');
    }
  });

  it('validates every element of a batch', async () => {
    const res = await h.call([rpc('list_documents', {}, 1), rpc('get_document', { document_id: 'x' }, 2)], { token });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.element, 1);
  });
});
