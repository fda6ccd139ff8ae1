import { parse } from 'csv-parse/sync';
import { AgentError } from '../shared/rpc-errors.js';
import { MAX_STORED_ROWS, type ParsedContent } from './extraction.js';
import { decodeUtf8 } from './parse-text.js';
import { fieldName } from './text-fields.js';

/**
 * Header and rows of a CSV file. Rows whose column count differs from the header's are kept and
 * listed (the validator decides what they cost) instead of failing the whole extraction.
 */
export function parseCsv(bytes: Buffer): ParsedContent {
  const text = decodeUtf8(bytes);
  let records: string[][];
  try {
    records = parse(text, { bom: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as string[][];
  } catch (error) {
    throw new AgentError('corrupt_document', `the CSV cannot be parsed: ${(error as Error).message}`);
  }
  const [header, ...data] = records;
  if (header === undefined) throw new AgentError('corrupt_document', 'the CSV file is empty');
  const columns = header.map((name, index) => fieldName(name) || `column_${index + 1}`);
  const inconsistent: number[] = [];
  const rows = data.map((record, index) => {
    if (record.length !== columns.length) inconsistent.push(index + 1);
    return Object.fromEntries(columns.map((column, i) => [column, record[i] ?? '']));
  });
  return {
    text,
    fields: { column_count: columns.length },
    columns,
    row_count: rows.length,
    rows: rows.slice(0, MAX_STORED_ROWS),
    inconsistent_rows: inconsistent.slice(0, 100),
  };
}
