import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseText } from '../../agents/extractor/parse-text.js';

/** The expression the count replaced: the specification. */
const bySplit = (text: string): number => (text === '' ? 0 : text.split(/\r?\n/).length);

const lineCount = (text: string): unknown => parseText(Buffer.from(text, 'utf8')).fields.line_count;

describe('extractor parseText line_count', () => {
  it('counts lines as splitting on \\r?\\n did: \\n, \\r\\n, a lone \\r, a trailing line break, none', () => {
    const texts = ['', 'one', 'one\n', 'one\ntwo', 'one\r\ntwo\r\n', 'one\rtwo', '\n', '\r\n', '\n\n\n', 'a\r\n\nb\r', 'Invoice: 42\r\nTotal: 7\n\n'];
    for (const text of texts) assert.equal(lineCount(text), bySplit(text), JSON.stringify(text));
    assert.deepEqual(texts.map(lineCount), [0, 1, 2, 2, 3, 1, 2, 2, 4, 3, 4]);
  });

  it('counts the lines of a 10 MiB text of short lines', () => {
    const text = 'a\r\n'.repeat(2 * 1024 * 1024) + 'b\n'.repeat(2 * 1024 * 1024);
    assert.equal(text.length, 10 * 1024 * 1024);
    assert.equal(lineCount(text), 4 * 1024 * 1024 + 1);
    assert.equal(lineCount(text), bySplit(text));
  });
});
