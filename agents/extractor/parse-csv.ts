import { parse } from 'csv-parse/sync';
import { AgentError } from '../shared/rpc-errors.js';
import { storableText } from '../shared/storable-text.js';
import { MAX_CSV_COLUMNS, MAX_LISTED_INCONSISTENT_ROWS, MAX_PARSER_MESSAGE, MAX_STORED_CELLS, MAX_STORED_ROWS, type ParsedContent } from './extraction.js';
import { decodeUtf8 } from './parse-text.js';
import { fieldName } from './text-fields.js';

/**
 * Header and rows of a CSV file. Rows whose column count differs from the header's are kept and
 * listed (the validator decides what they cost) instead of failing the whole extraction. Only the
 * rows that are stored become objects: a few kilobytes of header and one-cell rows would otherwise
 * ask for columns x rows keys, enough to run the extractor out of memory.
 */
export function parseCsv(bytes: Buffer): ParsedContent {
  const text = decodeUtf8(bytes);
  let records: string[][];
  try {
    records = parse(text, { bom: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as string[][];
  } catch (error) {
    throw new AgentError('corrupt_document', `the CSV cannot be parsed: ${storableText((error as Error).message, MAX_PARSER_MESSAGE)}`);
  }
  const [header, ...data] = records;
  if (header === undefined) throw new AgentError('corrupt_document', 'the CSV file is empty');
  if (header.length > MAX_CSV_COLUMNS) {
    throw new AgentError('unsupported_format', `the CSV has ${header.length} columns; at most ${MAX_CSV_COLUMNS} are read`);
  }
  const columns = header.map((name, index) => fieldName(name) || `column_${index + 1}`);
  const inconsistent: number[] = [];
  let inconsistentCount = 0;
  data.forEach((record, index) => {
    if (record.length === columns.length) return;
    inconsistentCount++;
    if (inconsistent.length < MAX_LISTED_INCONSISTENT_ROWS) inconsistent.push(index + 1);
  });
  const stored = Math.min(MAX_STORED_ROWS, Math.floor(MAX_STORED_CELLS / columns.length));
  return {
    text,
    fields: { column_count: columns.length },
    columns,
    row_count: data.length,
    rows: data.slice(0, stored).map((record) => Object.fromEntries(columns.map((column, i) => [column, record[i] ?? '']))),
    inconsistent_rows: inconsistent,
    inconsistent_row_count: inconsistentCount,
  };
}
