import { AgentError } from '../shared/rpc-errors.js';
import { storableText } from '../shared/storable-text.js';
import { MAX_PARSER_MESSAGE, type FieldValue, type ParsedContent } from './extraction.js';
import { decodeUtf8 } from './parse-text.js';
import { fieldName } from './text-fields.js';

const MAX_FIELDS = 100;

/** Top-level scalars of an object become fields; an array counts as rows. */
export function parseJson(bytes: Buffer): ParsedContent {
  const text = decodeUtf8(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AgentError('corrupt_document', `the JSON cannot be parsed: ${storableText((error as Error).message, MAX_PARSER_MESSAGE)}`);
  }
  const fields: Record<string, FieldValue> = {};
  if (Array.isArray(value)) return { text, fields: { item_count: value.length }, row_count: value.length };
  if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      const name = fieldName(key);
      if (name === '' || Object.hasOwn(fields, name)) continue;
      if (item === null || ['string', 'number', 'boolean'].includes(typeof item)) fields[name] = item as FieldValue;
      if (Object.keys(fields).length >= MAX_FIELDS) break;
    }
  }
  return { text, fields };
}
