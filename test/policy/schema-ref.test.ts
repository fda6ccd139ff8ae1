import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decide } from '../../proxy/policy/decide.js';
import { isPolicyLoadError } from '../../proxy/policy/errors.js';
import { evaluate } from '../../proxy/policy/evaluate.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { CLEAN_MCP, CLEAN_RBAC, CLEAN_SERVICE, policyDir } from './fixtures.js';

const OBJECT_ARGS = JSON.stringify({ type: 'object', required: ['key'], properties: { key: { $ref: '#/definitions/key' } }, definitions: { key: { type: 'string', minLength: 1 } } });
const DOC_REF = JSON.stringify({ type: 'object', properties: { document_id: { type: 'string' } } });

/** The problems loadPolicy reports for a file, as "line:column message". */
function problemsOf(file: string): string[] {
  try {
    loadPolicy(file);
  } catch (error) {
    if (isPolicyLoadError(error)) return error.problems.map((p) => `${p.line}:${p.column} ${p.message}`);
    throw error;
  }
  return [];
}

describe('a schema given by $ref to a file', () => {
  it('also applies the keys written beside the $ref (an argument restriction narrowing a shared schema)', () => {
    const rbac = CLEAN_RBAC.replace(/ {8}s3_get_object:\n[\s\S]*$/, [
      '        s3_get_object:',
      '          $ref: ./schemas/object-args.json',
      '          type: object',
      '          properties:',
      '            key: { type: string, pattern: "^uploads/" }',
      '',
    ].join('\n'));
    const dir = policyDir({ rbac, extra: { 'schemas/object-args.json': OBJECT_ARGS } });
    const policy = loadPolicy(join(dir, 'services', 'mcp.yaml'));
    const call = (key: unknown) => decide(policy, ['tooler'], { method: 'tools/call', tool: 's3_get_object', toolArguments: { key } });
    assert.equal(call('uploads/a.pdf').allowed, true);
    const outside = call('archive/a.pdf');
    assert.equal(outside.allowed, false);
    assert.equal(!outside.allowed && outside.code, 'authz.arguments_denied');
    // The file's own constraints (and its internal #/definitions reference) hold too.
    assert.equal(call('').allowed, false);
    assert.equal(decide(policy, ['tooler'], { method: 'tools/call', tool: 's3_get_object', toolArguments: {} }).allowed, false);
  });

  it('also applies them to a method params schema, and follows a #fragment into the file', () => {
    const service = CLEAN_SERVICE
      .replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc-ref.json, type: object, maxProperties: 1 } }')
      .replace('list_documents: { params: { type: object } }', 'list_documents: { params: { $ref: "../schemas/defs.json#/definitions/page" } }');
    const dir = policyDir({ service, extra: {
      'schemas/doc-ref.json': DOC_REF,
      'schemas/defs.json': JSON.stringify({ definitions: { page: { type: 'object', properties: { limit: { type: 'integer', maximum: 10 } } } } }),
    } });
    const policy = loadPolicy(join(dir, 'services', 'docs.yaml'));
    const get = (params: unknown) => evaluate(policy, ['viewer'], { method: 'get_document', params });
    assert.equal(get({ document_id: 'a' }).allowed, true);
    assert.equal(get({ document_id: 'a', extra: 1 }).allowed, false, 'maxProperties beside the $ref');
    assert.equal(get({ document_id: 7 }).allowed, false, 'the file itself');
    assert.equal(evaluate(policy, ['viewer'], { method: 'list_documents', params: { limit: 5 } }).allowed, true);
    assert.equal(evaluate(policy, ['viewer'], { method: 'list_documents', params: { limit: 50 } }).allowed, false);
    assert.equal(policy.files.filter((file) => file.endsWith('.json')).length, 2, 'each schema file is part of the version');
  });

  it('refuses a URL with its position instead of looking for a file named after it', () => {
    const service = CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: "https://schemas.example/doc.json" } }');
    const dir = policyDir({ service });
    assert.deepEqual(problemsOf(join(dir, 'services', 'docs.yaml')), ["10:35 $ref 'https://schemas.example/doc.json' is not a file path: schemas are files relative to the policy, never fetched"]);
  });

  it('reports a schema file that is not a schema, and one whose own $ref leads nowhere, where they are named', () => {
    const mcp = CLEAN_MCP.replace('s3_get_object: {}', 's3_get_object: { arguments: { $ref: ../schemas/list.json } }\n  s3_put_object: { arguments: { $ref: ../schemas/next.json } }');
    const dir = policyDir({ mcp, extra: { 'schemas/list.json': '[1, 2]\n', 'schemas/next.json': '{ "$ref": "other.json" }\n' } });
    const problems = problemsOf(join(dir, 'services', 'mcp.yaml'));
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0] ?? '', /^10:39 schema does not compile: .*list\.json: a schema is an object/);
    assert.match(problems[1] ?? '', /^11:31 schema does not compile: can't resolve reference other\.json/);
  });
});

describe('a $ref cycle', () => {
  it('is refused at load, not found as a stack overflow on every call', () => {
    const service = CLEAN_SERVICE
      .replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/cycle.json } }')
      .replace('list_documents: { params: { type: object } }', 'list_documents: { params: { $ref: "#" } }');
    const dir = policyDir({ service, extra: { 'schemas/cycle.json': '{ "$ref": "cycle.json" }\n' } });
    const problems = problemsOf(join(dir, 'services', 'docs.yaml'));
    assert.deepEqual(problems.map((p) => p.replace(/: Maximum .*/, '')), [
      '10:27 schema cannot be evaluated (a $ref cycle?)',
      '11:29 schema cannot be evaluated (a $ref cycle?)',
    ]);
  });

  it('that descends into the data (a recursive schema) loads and validates', () => {
    const service = CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/tree.json } }');
    const dir = policyDir({ service, extra: { 'schemas/tree.json': '{ "type": "object", "properties": { "child": { "$ref": "tree.json" }, "n": { "type": "integer" } } }\n' } });
    const policy = loadPolicy(join(dir, 'services', 'docs.yaml'));
    assert.equal(evaluate(policy, ['viewer'], { method: 'get_document', params: { child: { child: { n: 1 } } } }).allowed, true);
    assert.equal(evaluate(policy, ['viewer'], { method: 'get_document', params: { child: { child: { n: 'x' } } } }).allowed, false);
  });
});
