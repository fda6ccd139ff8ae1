import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fieldName, fieldsFromText } from '../../agents/extractor/text-fields.js';

/** The regex the scan replaced: the specification, run here on short lines only. */
const FIELD_LINE = /^\s*([A-Za-z][A-Za-z0-9 _./()-]{0,40}?)\s*[:=]\s*(\S.{0,200}?)\s*$/;

function byRegex(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = FIELD_LINE.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const name = fieldName(match[1]);
    if (name === '' || Object.hasOwn(fields, name)) continue;
    fields[name] = match[2];
    if (Object.keys(fields).length >= 50) break;
  }
  return fields;
}

/** mulberry32: the same pseudo-random texts on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  'a', 'Z', '9', ' ', '  ', '\t', '\u00a0', '\u3000', '\ufeff', '\v', '\f', '\r', '\u2028', '\u2029', '\u0085',
  ':', '=', '.', '(', ')', '_', '-', '/', 'é', '#', '\ud800', 'L'.repeat(40), 'M'.repeat(41),
  'v'.repeat(199), 'w'.repeat(200), ' '.repeat(45), '\n', '\r\n', '\n\r',
];

describe('fieldsFromText', () => {
  it('reads the fields of an invoice as before', () => {
    const text = [
      'ACME Corp', 'Invoice Number: INV-2024-001', '  Invoice Date : 2024-03-01  ', 'Due Date\t=\t2024-03-31',
      'Customer Email: billing@example.com', 'Total = 1,250.00', 'Invoice Number: INV-OTHER', 'Notes: paid: yes',
      'Tax (VAT 20%): 250.00', 'https://example.com/a', '2024-03-01: not a label', 'P.O./Ref-No_1: 77', '',
    ].join('\r\n');
    const expected = {
      invoice_number: 'INV-2024-001', invoice_date: '2024-03-01', due_date: '2024-03-31',
      customer_email: 'billing@example.com', total: '1,250.00', notes: 'paid: yes', https: '//example.com/a',
      p_o_ref_no_1: '77',
    };
    assert.deepEqual(fieldsFromText(text), expected);
    assert.deepEqual(byRegex(text), expected);
  });

  it('finds what the regex found on every UTF-16 code unit as whitespace, label, separator and value', () => {
    for (let code = 0; code <= 0xffff; code++) {
      const c = String.fromCharCode(code);
      for (const text of [`${c}a:b${c}`, `a${c}: b`, `a :${c}b`, `a: b${c}d`, `a=${c}`, `${c}`]) {
        assert.deepEqual(fieldsFromText(text), byRegex(text), `U+${code.toString(16)} in ${JSON.stringify(text)}`);
      }
    }
  });

  it('finds what the regex found on 20 000 generated texts, labels and values at their length limits', () => {
    const next = random(20240301);
    for (let round = 0; round < 20_000; round++) {
      let text = '';
      const pieces = 1 + Math.floor(next() * 14);
      for (let i = 0; i < pieces; i++) text += PIECES[Math.floor(next() * PIECES.length)];
      assert.deepEqual(fieldsFromText(text), byRegex(text), JSON.stringify(text));
    }
  });

  it('keeps the first occurrence of a label repeated on many lines, and the first 50 fields', () => {
    assert.deepEqual(fieldsFromText('Total: 1\nTotal: 2\nTOTAL = 3\n total:4\nTotal  : 5'), { total: '1' });
    const text = Array.from({ length: 60 }, (_, i) => `field ${i}: ${i}`).join('\n');
    const fields = fieldsFromText(text);
    assert.equal(Object.keys(fields).length, 50);
    assert.equal(fields['field_49'], '49');
    assert.deepEqual(fields, byRegex(text));
  });

  // The regex backtracked over a whitespace run after the value for each of 41 label and 201 value
  // lengths, 8 000 steps a character: such a line held the thread for almost 5 minutes, and a PDF's
  // text is scanned on the agent's thread, after the PDF worker's limits no longer apply.
  it('reads an 8 MiB line of whitespace runs and label-like prefixes', () => {
    const size = 8 * 2 ** 20;
    const prefixes = `Ab: ${'\t'.repeat(60)}`.repeat(2 ** 10);
    const hostile = `a${' '.repeat(40)}: x${' '.repeat(size - 44 - prefixes.length)}${prefixes}`;
    assert.equal(hostile.length, size);
    assert.equal(hostile.includes('\n'), false);
    assert.deepEqual(fieldsFromText(hostile), {});
    const padded = `Total${'\t'.repeat(size / 4)}=${' '.repeat(size / 4)}1,250.00${'\u3000'.repeat(size / 2 - 14)}`;
    assert.equal(padded.length, size);
    assert.deepEqual(fieldsFromText(padded), { total: '1,250.00' });
  });
});
