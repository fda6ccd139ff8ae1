import type { DocumentRecord } from '../shared/documents.js';
import { MAX_LISTED_INCONSISTENT_ROWS } from '../extractor/extraction.js';
import { storableText } from '../shared/storable-text.js';

/** What a rule sees: the document row, its extraction and the stored object as read back now. */
export interface RuleInput {
  readonly document: DocumentRecord;
  readonly extracted: Record<string, unknown>;
  readonly objectSha256: string;
  readonly objectSize: number;
}

/** A rule's verdict: pass, fail with a reason, or not applicable to this format. */
export type RuleVerdict = { readonly outcome: 'passed' } | { readonly outcome: 'failed'; readonly message: string } | { readonly outcome: 'skipped' };

/** A named validation rule. A failed `required` rule rejects the document whatever the score. */
export interface Rule {
  readonly name: string;
  readonly description: string;
  readonly required: boolean;
  readonly weight: number;
  check(input: RuleInput): RuleVerdict;
}

/** Largest document accepted (the gateway's default object cap). */
export const MAX_DOCUMENT_BYTES = 10 * 1024 * 1024;

const PASS: RuleVerdict = { outcome: 'passed' };
const SKIP: RuleVerdict = { outcome: 'skipped' };
const fail = (message: string): RuleVerdict => ({ outcome: 'failed', message });

/**
 * A name or value from the document quoted in a message: JSON string syntax, so a newline or a
 * quote in it cannot pass for the message's own text; storable (the report is jsonb) and bounded.
 * The extraction is read back from the row, so even its field names are not trusted here.
 */
const quote = (text: string, maxChars: number): string => JSON.stringify(storableText(text, maxChars));

/** A CSV may have 1 000 columns: a report names the first few, not 11 KB of them. */
const MAX_LISTED_COLUMNS = 10;

/** The first `max` items and how many more there are. */
const listed = (items: readonly string[], max: number): string =>
  items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;

const EXTENSIONS: Readonly<Record<string, readonly string[]>> = {
  pdf: ['pdf'], csv: ['csv'], json: ['json'], text: ['txt', 'text', 'md', 'log'],
};

/** ISO 8601 date (optionally with a time) naming a real calendar day: 2024-02-30 is refused. */
function isIsoDate(value: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(value);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

// Column or field names that announce a format, and that format's check.
const FORMATS: readonly { readonly name: string; readonly applies: RegExp; readonly valid: (value: string) => boolean }[] = [
  { name: 'date', applies: /(^|_)(date|due|issued)($|_)|_at$/, valid: isIsoDate },
  { name: 'amount', applies: /(^|_)(amount|total|price|cost|subtotal|tax)($|_)/, valid: (v) => /^-?\d{1,15}([.,]\d{1,4})?( ?[A-Z]{3}|€|\$)?$/.test(v.replace(/^[€$] ?/, '').replace(/(\d),(\d{3})/g, '$1$2')) },
  // Length first (RFC 5321 §4.5.3.1.3: a path is at most 256 octets): on a long value the pattern
  // backtracks in time quadratic in its length, and an uploaded document decides that length.
  { name: 'email', applies: /(^|_)e?mail($|_)/, valid: (v) => v.length <= 254 && /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/.test(v) },
];

function str(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** Every (name, value) pair the format rules look at: scalar fields, then CSV cells by column. */
function namedValues(extracted: Record<string, unknown>): [string, string][] {
  const pairs: [string, string][] = [];
  const fields = extracted['fields'];
  if (typeof fields === 'object' && fields !== null) {
    for (const [name, value] of Object.entries(fields)) {
      const text = str(value);
      if (text !== undefined && text !== '') pairs.push([name, text]);
    }
  }
  const rows = extracted['rows'];
  if (Array.isArray(rows)) {
    for (const row of rows as Record<string, unknown>[]) {
      for (const [name, value] of Object.entries(row)) {
        const text = str(value);
        if (text !== undefined && text !== '') pairs.push([name, text]);
      }
    }
  }
  return pairs;
}

/** The validator's rules, in the order they are reported. */
export const RULES: readonly Rule[] = [
  {
    name: 'hash_matches',
    description: 'The stored object\'s SHA-256 equals the one recorded at upload and the one extracted.',
    required: true,
    weight: 3,
    check: ({ document, extracted, objectSha256 }) => {
      if (objectSha256 !== document.sha256) return fail(`stored object hash ${objectSha256.slice(0, 12)}… differs from the recorded ${document.sha256.slice(0, 12)}…`);
      if (extracted['content_hash'] !== document.sha256) return fail('the extraction was made from different bytes than the recorded upload');
      return PASS;
    },
  },
  {
    name: 'size_within_limits',
    description: `Size is between 1 byte and ${MAX_DOCUMENT_BYTES} bytes and matches the stored object.`,
    required: true,
    weight: 1,
    check: ({ document, objectSize }) => {
      if (document.size_bytes <= 0) return fail('the document is empty');
      if (document.size_bytes > MAX_DOCUMENT_BYTES) return fail(`the document is ${document.size_bytes} bytes, over ${MAX_DOCUMENT_BYTES}`);
      if (objectSize !== document.size_bytes) return fail(`stored object is ${objectSize} bytes, recorded ${document.size_bytes}`);
      return PASS;
    },
  },
  {
    name: 'filename_matches_format',
    description: 'The file name\'s extension fits the detected format.',
    required: false,
    weight: 1,
    check: ({ document, extracted }) => {
      const format = String(extracted['format']);
      const dot = document.filename.lastIndexOf('.');
      const extension = dot <= 0 ? '' : document.filename.slice(dot + 1).toLowerCase();
      return (EXTENSIONS[format] ?? []).includes(extension) ? PASS : fail(`extension ${quote(`.${extension}`, 20)} does not fit format ${format}`);
    },
  },
  {
    name: 'has_content',
    description: 'The document holds text (PDF text layer, text, JSON) or at least one data row (CSV).',
    required: true,
    weight: 1,
    check: ({ extracted }) => {
      if (extracted['format'] === 'csv') return Number(extracted['row_count'] ?? 0) > 0 ? PASS : fail('the CSV has a header but no rows');
      return String(extracted['text'] ?? '').trim() !== '' ? PASS : fail(extracted['format'] === 'pdf' ? 'the PDF has no text layer (scanned?)' : 'the document is blank');
    },
  },
  {
    name: 'required_fields',
    description: 'The format\'s structure is complete: pages (PDF), named unique columns (CSV), fields or items (JSON), lines (text).',
    required: false,
    weight: 2,
    check: ({ extracted }) => {
      const fields = (extracted['fields'] ?? {}) as Record<string, unknown>;
      switch (extracted['format']) {
        case 'pdf':
          return Number(extracted['page_count'] ?? 0) >= 1 ? PASS : fail('no pages');
        case 'csv': {
          const columns = (extracted['columns'] ?? []) as string[];
          const unnamed = columns.filter((c) => /^column_\d+$/.test(c));
          if (unnamed.length > 0) return fail(`unnamed columns: ${listed(unnamed, MAX_LISTED_COLUMNS)}`);
          if (new Set(columns).size !== columns.length) return fail('duplicate column names');
          return columns.length > 0 ? PASS : fail('no columns');
        }
        case 'json':
          return Object.keys(fields).length > 0 ? PASS : fail('no top-level fields or items');
        default:
          return Number(fields['line_count'] ?? 0) > 0 ? PASS : fail('no lines');
      }
    },
  },
  {
    name: 'consistent_rows',
    description: 'Every CSV row has as many cells as the header.',
    required: false,
    weight: 2,
    check: ({ extracted }) => {
      if (extracted['format'] !== 'csv') return SKIP;
      const bad = (extracted['inconsistent_rows'] ?? []) as number[];
      if (bad.length === 0) return PASS;
      // An extraction recorded before the count was kept lists at most the first 100: a full list says "at least".
      const count = extracted['inconsistent_row_count'];
      const how = typeof count === 'number' ? String(count) : bad.length >= MAX_LISTED_INCONSISTENT_ROWS ? `at least ${bad.length}` : String(bad.length);
      return fail(`${how} row(s) with the wrong number of cells (${bad.length > 5 ? 'first rows' : 'rows'} ${bad.slice(0, 5).join(', ')})`);
    },
  },
  {
    name: 'field_formats',
    description: 'Values of date, amount and email fields (and CSV columns) are well-formed.',
    required: false,
    weight: 2,
    check: ({ extracted }) => {
      const problems: string[] = [];
      let checked = 0;
      for (const [name, value] of namedValues(extracted)) {
        const format = FORMATS.find((f) => f.applies.test(name));
        if (format === undefined) continue;
        checked++;
        if (!format.valid(value)) problems.push(`${quote(name, 64)}=${quote(value, 40)} is not a valid ${format.name}`);
      }
      if (checked === 0) return SKIP;
      return problems.length === 0 ? PASS : fail(`${problems.length} malformed value(s): ${problems.slice(0, 3).join('; ')}`);
    },
  },
];
