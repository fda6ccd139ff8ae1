import { AgentError } from '../shared/rpc-errors.js';
import type { ParsedContent } from './extraction.js';
import { fieldsFromText } from './text-fields.js';

/** UTF-8 only: a binary file sent as text is refused rather than stored as mojibake. */
export function decodeUtf8(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new AgentError('corrupt_document', 'the file is not valid UTF-8 text');
  }
}

/** Plain text: the text itself, its line count and "Label: value" fields. */
export function parseText(bytes: Buffer): ParsedContent {
  const text = decodeUtf8(bytes);
  // eslint-disable-next-line no-control-regex -- NUL bytes mark binary content
  if (/\u0000/.test(text)) throw new AgentError('corrupt_document', 'the file holds NUL bytes: not plain text');
  return { text, fields: { line_count: lineCount(text), ...fieldsFromText(text) } };
}

/**
 * Lines as text.split(/\r?\n/) counts them (a trailing line break opens one more, empty, line; a
 * lone \r breaks none), counted without the array: a 10 MiB text of short lines made millions of
 * strings to be counted.
 */
function lineCount(text: string): number {
  if (text === '') return 0;
  let count = 1;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) count++;
  return count;
}
