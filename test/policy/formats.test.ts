import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSchemaCompiler } from '../../proxy/policy/ajv.js';
import { checkPolicies } from '../../proxy/policy/tooling/check.js';
import { CLEAN_SERVICE, policyDir } from './fixtures.js';

const withFormat = (format: string): string => CLEAN_SERVICE.replace('get_document: { params: { type: object } }', `get_document: { params: { type: object, properties: { link: { type: string, format: ${format} } } } }`);

describe('formats a policy schema may use', () => {
  it('refuses format url (its check is slower than linear) where it is written, pointing to uri', () => {
    const dir = policyDir({ service: withFormat('url') });
    const found = checkPolicies([dir]).diagnostics.map((d) => `${d.file.slice(dir.length + 1)}:${d.line}:${d.column} ${d.severity} ${d.message}`);
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0] as string, /^services\/docs\.yaml:10:87 error \/methods\/get_document\/params\/properties\/link\/format: format 'url' is not available: .*7\.9 s on 80 000 characters\); use uri \(available: date, /);
  });

  it('accepts the others, uri and email among them', () => {
    for (const format of ['uri', 'email', 'uuid', 'date-time', 'hostname']) {
      assert.deepEqual(checkPolicies([policyDir({ service: withFormat(format) })]).diagnostics, [], format);
    }
  });

  it('the schema compiler itself knows no url format', () => {
    assert.throws(() => createSchemaCompiler().compile({ type: 'string', format: 'url' }), /unknown format "url"/);
    assert.equal(createSchemaCompiler().compile({ type: 'string', format: 'uri' })('https://example.com/a'), true);
  });
});
