import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadMethodSpecs } from '../../agents/shared/method-specs.js';
import { compileParams } from '../../agents/shared/params.js';
import { evaluate } from '../../proxy/policy/evaluate.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { CLEAN_SERVICE, policyDir } from '../policy/fixtures.js';

// Each file refers to its own definitions: they must resolve inside the file wherever it is used.
const DOC_REF = JSON.stringify({
  $id: 'doc-ref.json', type: 'object', required: ['document_id'], properties: { document_id: { $ref: '#/definitions/id' } }, definitions: { id: { type: 'string', minLength: 2 } },
});
const DEFS = JSON.stringify({
  definitions: { page: { type: 'object', properties: { limit: { $ref: '#/definitions/limit' } } }, limit: { type: 'integer', maximum: 10 } },
});

describe("an agent's params schemas, read from the policy the sidecar enforces", () => {
  it('accept and refuse what the sidecar does: keys beside a file $ref constrain, a #fragment is followed, the file keeps its own references', () => {
    const service = CLEAN_SERVICE
      .replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc-ref.json, type: object, maxProperties: 1 } }')
      .replace('list_documents: { params: { type: object } }', 'list_documents: { params: { $ref: "../schemas/defs.json#/definitions/page", type: object, minProperties: 1 } }')
      .replace('methods:', 'methods:\n  check_status: { params: { $ref: ../schemas/doc-ref.json } }\n  delete_document: { params: { $ref: ../schemas/doc-ref.json, type: object, properties: { document_id: { type: string, maxLength: 4 } } } }');
    const dir = policyDir({ service, extra: { 'schemas/doc-ref.json': DOC_REF, 'schemas/defs.json': DEFS } });
    const policy = loadPolicy(join(dir, 'services', 'docs.yaml'));
    const agent = compileParams(loadMethodSpecs('docs', join(dir, 'services')));
    const cases: [method: string, params: unknown, accepted: boolean][] = [
      ['get_document', { document_id: 'ab' }, true],
      ['get_document', { document_id: 'ab', extra: 1 }, false],
      ['get_document', { document_id: 'a' }, false],
      ['get_document', {}, false],
      ['check_status', { document_id: 'ab', extra: 1 }, true],
      ['check_status', { document_id: 'a' }, false],
      ['delete_document', { document_id: 'abcd' }, true],
      ['delete_document', { document_id: 'abcde' }, false],
      ['delete_document', { document_id: 'a' }, false],
      ['list_documents', { limit: 5 }, true],
      ['list_documents', { limit: 50 }, false],
      ['list_documents', {}, false],
    ];
    for (const [method, params, accepted] of cases) {
      const at = `${method} ${JSON.stringify(params)}`;
      assert.equal(evaluate(policy, ['admin'], { method, params }).allowed, accepted, `sidecar: ${at}`);
      assert.equal(agent.get(method)?.(params), accepted, `agent: ${at}`);
    }
  });

  it('keep a plain file $ref as the file itself (the agent card shows it)', () => {
    const service = CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc-ref.json } }');
    const dir = policyDir({ service, extra: { 'schemas/doc-ref.json': DOC_REF } });
    const { $id: _id, ...file } = JSON.parse(DOC_REF) as Record<string, unknown>;
    assert.deepEqual(loadMethodSpecs('docs', join(dir, 'services')).find((spec) => spec.name === 'get_document')?.params, file);
  });
});
