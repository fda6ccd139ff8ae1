import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CSV_COLUMNS } from '../../agents/extractor/extraction.js';
import { parseCsv } from '../../agents/extractor/parse-csv.js';
import { parseJson } from '../../agents/extractor/parse-json.js';
import type { DocumentRecord } from '../../agents/shared/documents.js';
import { evaluate } from '../../agents/validator/evaluate.js';

/** The field_formats verdict on a JSON document holding one `email` field. */
function emailVerdict(email: string): string | undefined {
  const bytes = Buffer.from(JSON.stringify({ email }));
  const extracted = { format: 'json', ...parseJson(bytes) } as Record<string, unknown>;
  const document = { sha256: 'x', size_bytes: bytes.length, filename: 'a.json' } as DocumentRecord;
  const report = evaluate({ document, extracted, objectSha256: 'x', objectSize: bytes.length });
  return report.rules.find((result) => result.rule === 'field_formats')?.outcome;
}

describe('validator: field formats', () => {
  // Over 254 characters a value is no address (RFC 5321), and is refused before the pattern runs:
  // on a long value the old pattern backtracked for a time quadratic in its length (a 200 KB field
  // held the validator for 27 s).
  it('tells well-formed email addresses from malformed ones, and refuses one over 254 characters', () => {
    for (const good of ['a@b.co', 'john.doe@example.co.uk', `${'a'.repeat(64)}@${'b'.repeat(180)}.example`]) assert.equal(emailVerdict(good), 'passed', good);
    for (const bad of ['a@b', 'a@b..c', 'a@.b.c', 'a b@c.d', `${'a'.repeat(64)}@${'b'.repeat(190)}.example`]) assert.equal(emailVerdict(bad), 'failed', bad.slice(0, 40));
  });
});

describe('validator: failure messages quoting the document', () => {
  // The message put the name and 40 units of the value between bare quotes: a newline in either
  // wrote a line of its own into the report and the failure reason, and a field name (the
  // extraction is read back from the row) went in whole.
  it('quotes a hostile field name and value as bounded JSON strings', () => {
    const name = `email_\nrequired rule failed: hash_matches${'x'.repeat(5000)}`;
    const value = `not-an-address'\n"${'y'.repeat(5000)}`;
    const extracted = { format: 'json', fields: { [name]: value } };
    const document = { sha256: 'x', size_bytes: 1, filename: 'a.json' } as DocumentRecord;
    const report = evaluate({ document, extracted, objectSha256: 'x', objectSize: 1 });
    const message = report.rules.find((result) => result.rule === 'field_formats')?.message ?? '';
    assert.doesNotMatch(message, /[\n\r]/);
    assert.ok(message.length < 200, `${message.length} characters`);
    const quoted = /^1 malformed value\(s\): (".*")=(".*") is not a valid email$/.exec(message);
    assert.ok(quoted, message);
    assert.equal(JSON.parse(quoted[1] as string), `${name.slice(0, 63)}…`);
    assert.equal(JSON.parse(quoted[2] as string), `${value.slice(0, 39)}…`);
  });

  it('quotes a hostile file extension as a bounded JSON string', () => {
    const document = { sha256: 'x', size_bytes: 1, filename: `a.p'd\u2028f${'z'.repeat(300)}` } as DocumentRecord;
    const report = evaluate({ document, extracted: { format: 'pdf' }, objectSha256: 'x', objectSize: 1 });
    const message = report.rules.find((result) => result.rule === 'filename_matches_format')?.message ?? '';
    assert.equal(message, `extension ${JSON.stringify(`.p'd\u2028f${'z'.repeat(13)}…`)} does not fit format pdf`);
  });
});

describe('validator: required_fields on a CSV', () => {
  /** The required_fields message on a CSV whose header is `header`, with one data row. */
  function requiredFieldsMessage(header: string[]): string | undefined {
    const bytes = Buffer.from(`${header.join(',')}\n${header.map(() => '1').join(',')}\n`);
    const extracted = { format: 'csv', ...parseCsv(bytes) } as Record<string, unknown>;
    const document = { sha256: 'x', size_bytes: bytes.length, filename: 'a.csv' } as DocumentRecord;
    const report = evaluate({ document, extracted, objectSha256: 'x', objectSize: bytes.length });
    const result = report.rules.find((r) => r.rule === 'required_fields');
    return result?.outcome === 'failed' ? result.message : undefined;
  }

  it('names every unnamed column up to ten', () => {
    assert.equal(requiredFieldsMessage(['id', '', 'total', '']), 'unnamed columns: column_2, column_4');
    const ten = Array.from({ length: 10 }, () => '');
    assert.equal(requiredFieldsMessage(ten), `unnamed columns: ${ten.map((_, i) => `column_${i + 1}`).join(', ')}`);
  });

  // Every unnamed column was listed: 1 000 of them put 11 KB into the stored report.
  it('names the first ten of 1 000 unnamed columns and counts the rest', () => {
    const header = Array.from({ length: MAX_CSV_COLUMNS }, (_, i) => (i % 2 === 0 ? '' : '#'));
    const first = Array.from({ length: 10 }, (_, i) => `column_${i + 1}`).join(', ');
    assert.equal(MAX_CSV_COLUMNS, 1000);
    assert.equal(requiredFieldsMessage(header), `unnamed columns: ${first} and 990 more`);
  });
});

describe('validator: consistent_rows', () => {
  /** The consistent_rows message for an extraction. */
  const message = (extracted: Record<string, unknown>) => {
    const document = { sha256: 'x', size_bytes: 1, filename: 'a.csv' } as DocumentRecord;
    return evaluate({ document, extracted: { format: 'csv', ...extracted }, objectSha256: 'x', objectSize: 1 }).rules.find((r) => r.rule === 'consistent_rows')?.message;
  };

  // The extractor lists the first 100 bad rows only, and the message counted the list: 100.
  it('counts every row with the wrong number of cells, past the 100 the extraction lists', () => {
    const csv = ['a,b', ...Array.from({ length: 150 }, (_, i) => (i % 2 === 0 ? '1' : '1,2')), ...Array.from({ length: 90 }, () => '1,2,3')].join('\n');
    const parsed = parseCsv(Buffer.from(csv));
    assert.equal(parsed.inconsistent_rows?.length, 100);
    assert.equal(parsed.inconsistent_row_count, 165);
    assert.equal(message({ ...parsed }), '165 row(s) with the wrong number of cells (first rows 1, 3, 5, 7, 9)');
    assert.equal(message({ ...parseCsv(Buffer.from('a,b\n1\n1,2\n')) }), '1 row(s) with the wrong number of cells (rows 1)');
  });

  it('says "at least" for an extraction recorded without the count whose list is full', () => {
    assert.equal(message({ inconsistent_rows: Array.from({ length: 100 }, (_, i) => i + 1) }), 'at least 100 row(s) with the wrong number of cells (first rows 1, 2, 3, 4, 5)');
    assert.equal(message({ inconsistent_rows: [4, 9] }), '2 row(s) with the wrong number of cells (rows 4, 9)');
  });
});
