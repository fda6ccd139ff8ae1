import type { FieldValue } from './extraction.js';

const MAX_FIELDS = 50;
const MAX_LABEL = 41;
const MAX_VALUE = 201;
const MAX_NAMED = 1000;

/** snake_case field name from a label ("Invoice Number" → invoice_number). */
export function fieldName(label: string): string {
  return label.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 64);
}

/** What JavaScript's `\s` matches (ECMA-262 WhiteSpace and LineTerminator), one UTF-16 unit. */
function isSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0xa0) return false;
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029
    || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** A character that `.` does not match besides \n, which never reaches a line. */
function isLineBreak(c: number): boolean {
  return c === 0x0d || c === 0x2028 || c === 0x2029;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** [A-Za-z0-9 _./()-] */
function isLabelChar(c: number): boolean {
  return isLetter(c) || (c >= 0x30 && c <= 0x39) || c === 0x20 || c === 0x5f || (c >= 0x28 && c <= 0x29)
    || (c >= 0x2d && c <= 0x2f);
}

/**
 * Label and value of one line, as `^\s*([A-Za-z][A-Za-z0-9 _./()-]{0,40}?)\s*[:=]\s*(\S.{0,200}?)\s*$`
 * would capture them, in one pass: that regex backtracks over every whitespace run (41 label
 * lengths × 201 value lengths), seconds per 100 KB of spaces, on the agent's own thread.
 */
function fieldLine(text: string, start: number, end: number): [string, string] | undefined {
  let p = start;
  while (p < end && isSpace(text.charCodeAt(p))) p++;
  if (p === end || !isLetter(text.charCodeAt(p))) return undefined;
  let q = p + 1;
  while (q < end && isLabelChar(text.charCodeAt(q))) q++;
  // The label ends where its trailing spaces start: only whitespace may stand before the separator.
  let labelEnd = q;
  while (text.charCodeAt(labelEnd - 1) === 0x20) labelEnd--;
  if (labelEnd - p > MAX_LABEL) return undefined;
  let s = q;
  while (s < end && isSpace(text.charCodeAt(s))) s++;
  const separator = text.charCodeAt(s);
  if (s === end || (separator !== 0x3a && separator !== 0x3d)) return undefined;
  let v = s + 1;
  while (v < end && isSpace(text.charCodeAt(v))) v++;
  if (v === end) return undefined;
  let valueEnd = end;
  while (isSpace(text.charCodeAt(valueEnd - 1))) valueEnd--;
  if (valueEnd - v > MAX_VALUE) return undefined;
  for (let i = v + 1; i < valueEnd; i++) if (isLineBreak(text.charCodeAt(i))) return undefined;
  return [text.slice(p, labelEnd), text.slice(v, valueEnd)];
}

/**
 * Structured fields from "Label: value" lines: the common shape of invoices, forms and notes.
 * The first occurrence of a label wins; values stay text (the validator checks their formats).
 * Linear in the text's length: a PDF's text is scanned here, on the agent's thread, after the
 * PDF worker's limits no longer apply.
 */
export function fieldsFromText(text: string): Record<string, FieldValue> {
  const fields: Record<string, FieldValue> = {};
  // Labels already named: a label repeated on every line is named once.
  const named = new Set<string>();
  let count = 0;
  for (let start = 0; start <= text.length && count < MAX_FIELDS;) {
    const newline = text.indexOf('\n', start);
    const next = newline === -1 ? text.length + 1 : newline + 1;
    let end = newline === -1 ? text.length : newline;
    if (newline !== -1 && end > start && text.charCodeAt(end - 1) === 0x0d) end--;
    const field = fieldLine(text, start, end);
    start = next;
    if (field === undefined || named.has(field[0])) continue;
    if (named.size < MAX_NAMED) named.add(field[0]);
    const name = fieldName(field[0]);
    if (name === '' || Object.hasOwn(fields, name)) continue;
    fields[name] = field[1];
    count++;
  }
  return fields;
}
