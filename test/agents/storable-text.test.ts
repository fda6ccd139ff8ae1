import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TRUNCATION_MARK, storableText } from '../../agents/shared/storable-text.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

const LONE_SURROGATE = /\p{Cs}/u;

describe('storableText', () => {
  it('removes NUL and keeps every other control character', () => {
    assert.equal(storableText('a\u0000b\u0000\u0000c\n\t\u0001', 100), 'abc\n\t\u0001');
  });

  it('replaces a lone high or low surrogate with U+FFFD and keeps a pair', () => {
    assert.equal(storableText('x\ud800y', 100), 'x\ufffdy');
    assert.equal(storableText('x\udc00y', 100), 'x\ufffdy');
    assert.equal(storableText('\udc00\ud800', 100), '\ufffd\ufffd');
    assert.equal(storableText('end\ud83d', 100), 'end\ufffd');
    assert.equal(storableText('😀 ok', 100), '😀 ok');
  });

  it('leaves a string within the limit as it is, and cuts a longer one to the limit with the mark', () => {
    assert.equal(storableText('abcde', 5), 'abcde');
    assert.equal(storableText('abcdef', 5), `abcd${TRUNCATION_MARK}`);
    assert.equal(storableText('abcdef', 5).length, 5);
    // The limit applies after NUL is removed.
    assert.equal(storableText('ab\u0000\u0000cde', 5), 'abcde');
    assert.equal(storableText('', 0), '');
    assert.equal(storableText('ab', 1), TRUNCATION_MARK);
    assert.equal(storableText('ab', 0), '');
    assert.throws(() => storableText('a', -1), RangeError);
    assert.throws(() => storableText('a', 1.5), RangeError);
  });

  it('never cuts between the two halves of a pair', () => {
    // The pair sits on the cut (units 3 and 4 of a 5-unit limit: 4 are kept before the mark).
    const cut = storableText('abc😀def', 5);
    assert.equal(cut, `abc${TRUNCATION_MARK}`);
    assert.doesNotMatch(cut, LONE_SURROGATE);
    assert.equal(storableText('abcd😀ef', 6), `abcd${TRUNCATION_MARK}`);
    assert.equal(storableText('abc😀def', 6), `abc😀${TRUNCATION_MARK}`);
    for (let limit = 1; limit < 12; limit++) {
      const text = storableText('😀😀😀😀😀😀', limit);
      assert.doesNotMatch(text, LONE_SURROGATE, `limit ${limit}`);
      assert.ok(text.length <= limit, `limit ${limit}`);
    }
  });
});

describe('documents holding NUL or lone surrogates, through the MCP gateway (PostgreSQL)', () => {
  let stack: AgentStack;
  before(async () => void (stack = await startAgentStack({ postgres: true })));
  after(() => stack.close());

  const upload = async (filename: string, contentType: string, content: string | Buffer): Promise<string> => {
    const answer = await stack.call('orchestrator', 'upload_document', { filename, content_type: contentType, content_base64: Buffer.from(content).toString('base64') }, 'lambda');
    assert.ok(answer.result, JSON.stringify(answer.error));
    return String(answer.result['document_id']);
  };
  const processDoc = async (id: string) => (await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda')).result;
  const stored = async (id: string) => (await stack.call('archivist', 'get_document', { document_id: id }, 'viewer')).result as Record<string, unknown>;
  const logs = async (id: string) => (await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer')).result?.['logs'] as { step: string; status: string; message: string | null }[];

  // jsonb refused the extraction ("extracted contains U+0000"): the document failed.
  it('extracts and stores a CSV whose cell holds NUL, without the NUL', async () => {
    const id = await upload('nul.csv', 'text/csv', 'name,note\nalice,hello\u0000world\n');
    const answer = await processDoc(id);
    assert.equal(answer?.['status'], 'archived', JSON.stringify(answer));
    const extracted = (await stored(id))['extracted'] as { text: string; rows: Record<string, string>[] };
    assert.equal(extracted.text, 'name,note\nalice,helloworld\n');
    assert.deepEqual(extracted.rows, [{ name: 'alice', note: 'helloworld' }]);
  });

  // A JSON escape of a lone surrogate in a value: jsonb refused the extraction.
  it('extracts and stores a JSON document whose values escape NUL and a lone surrogate', async () => {
    const id = await upload('escapes.json', 'application/json', '{"title": "\\ud800 alone", "note": "a\\u0000b", "low": "\\udc00"}');
    const answer = await processDoc(id);
    assert.equal(answer?.['status'], 'archived', JSON.stringify(answer));
    const extracted = (await stored(id))['extracted'] as { fields: Record<string, string> };
    assert.deepEqual(extracted.fields, { title: '\ufffd alone', note: 'ab', low: '\ufffd' });
  });

  // The JSON parser's message quotes the document, NUL included: the gateway refused that reason
  // (documents_update and processing_logs_append), and the document stayed processing.
  it('records the failure of a JSON document whose parse error quotes a NUL byte', async () => {
    const id = await upload('raw-nul.json', 'application/json', '{"a": \u0000\ud83d}');
    const answer = await processDoc(id);
    assert.equal(answer?.['status'], 'failed', JSON.stringify(answer));
    const doc = await stored(id);
    assert.equal(doc['status'], 'failed');
    assert.match(String(doc['error']), /^extract: the JSON cannot be parsed: /);
    assert.ok(!String(doc['error']).includes('\u0000'));
    const last = (await logs(id)).at(-1);
    assert.deepEqual([last?.step, last?.status], ['extract', 'failed']);
    assert.equal(last?.message, doc['error']);
  });

  // The validator quoted 40 UTF-16 units of a value: here the high half of an emoji, which jsonb
  // refused in the report, so validation failed instead of recording its verdict.
  it('records a validation report that quotes a value whose 40th unit is half an emoji', async () => {
    const id = await upload('emails.csv', 'text/csv', `name,email\nalice,${'a'.repeat(39)}😀\n`);
    const answer = await processDoc(id);
    assert.equal(answer?.['status'], 'archived', JSON.stringify(answer));
    const validation = (await stored(id))['validation'] as { failures: { rule: string; message: string }[] };
    const failure = validation.failures.find((f) => f.rule === 'field_formats');
    assert.equal(failure?.message, `1 malformed value(s): "email"="${'a'.repeat(39)}${TRUNCATION_MARK}" is not a valid email`);
  });
});
