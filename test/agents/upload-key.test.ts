import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { keySafeName } from '../../agents/orchestrator/upload.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

/** What a key segment must never hold: a separator, a dot segment, a control, a lone surrogate. */
function assertSafe(name: string): void {
  assert.ok(name.length >= 1 && name.length <= 200, `${name.length} characters`);
  assert.match(name, /^[\p{L}\p{N}._…-]+$/u);
  assert.ok(name !== '.' && name !== '..');
  assert.doesNotMatch(name, /\p{Cs}/u);
}

describe('the object key name of an upload', () => {
  it('turns separators, dot segments, controls and percent escapes into a plain segment', () => {
    const cases: [string, string][] = [
      ['../../etc/passwd', '.._.._etc_passwd'],
      ['a\u0000b\nc.pdf', 'a_b_c.pdf'],
      ['..', 'file'],
      ['.', 'file'],
      ['%2e%2e%2fx.txt', '_2e_2e_2fx.txt'],
      ['invoice\u202efdp.exe', 'invoice_fdp.exe'],
      ['C:\\temp\\a.csv', 'C_temp_a.csv'],
    ];
    for (const [name, key] of cases) {
      assert.equal(keySafeName(name), key, JSON.stringify(name));
      assertSafe(keySafeName(name));
    }
  });

  it('cuts a long name to 200 characters keeping its extension, never inside a surrogate pair', () => {
    const long = keySafeName(`${'x'.repeat(2000)}.pdf`);
    assert.equal(long, `${'x'.repeat(195)}….pdf`);
    const astral = keySafeName(`a${'𝒜'.repeat(1000)}.txt`);
    assertSafe(astral);
    assert.ok(astral.endsWith('….txt'));
    // An extension longer than 16 is no extension worth keeping.
    assert.equal(keySafeName(`a.${'y'.repeat(300)}`), `a.${'y'.repeat(197)}…`);
  });
});

describe('an upload whose name is long and astral, through the MCP gateway', () => {
  let stack: AgentStack;
  before(async () => void (stack = await startAgentStack()));
  after(() => stack.close());

  // The name was cut at 200 UTF-16 units, here between the halves of a 𝒜: the gateway refused the
  // key ("not well-formed Unicode") and the upload failed.
  it('stores it under a well-formed key with its extension, keeps the name on the row, and processes it', async () => {
    const filename = `a${'𝒜'.repeat(120)}.txt`;
    const answer = await stack.call('orchestrator', 'upload_document', { filename, content_type: 'text/plain', content_base64: Buffer.from('Title: notes\n').toString('base64') }, 'lambda');
    assert.ok(answer.result, JSON.stringify(answer.error));
    const id = String(answer.result['document_id']);
    const doc = (await stack.call('archivist', 'get_document', { document_id: id }, 'viewer')).result;
    assert.equal(doc?.['filename'], filename);
    const key = String(doc?.['s3_key']);
    assert.ok(key.startsWith(`uploads/${id}/`), key);
    assertSafe(key.slice(key.lastIndexOf('/') + 1));
    assert.ok(key.endsWith('….txt'), key);
    const processed = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    assert.equal(processed.result?.['status'], 'archived', JSON.stringify(processed));
  });
});
