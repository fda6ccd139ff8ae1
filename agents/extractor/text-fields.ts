import type { FieldValue } from './extraction.js';

const MAX_FIELDS = 50;
// "Invoice Number: INV-001" or "Total = 1,250.00": a short label, a separator, a value.
const FIELD_LINE = /^\s*([A-Za-z][A-Za-z0-9 _./()-]{0,40}?)\s*[:=]\s*(\S.{0,200}?)\s*$/;

/** snake_case field name from a label ("Invoice Number" → invoice_number). */
export function fieldName(label: string): string {
  return label.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 64);
}

/**
 * Structured fields from "Label: value" lines: the common shape of invoices, forms and notes.
 * The first occurrence of a label wins; values stay text (the validator checks their formats).
 */
export function fieldsFromText(text: string): Record<string, FieldValue> {
  const fields: Record<string, FieldValue> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = FIELD_LINE.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const name = fieldName(match[1]);
    if (name === '' || Object.hasOwn(fields, name)) continue;
    fields[name] = match[2];
    if (Object.keys(fields).length >= MAX_FIELDS) break;
  }
  return fields;
}
