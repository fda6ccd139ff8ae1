/** What a string cut by {@link storableText} ends with (one UTF-16 unit, counted in the limit). */
export const TRUNCATION_MARK = '…';

// With the u flag a surrogate pair is one code point: only a surrogate standing alone is in Cs.
const LONE_SURROGATE = /\p{Cs}/gu;
// eslint-disable-next-line no-control-regex -- U+0000 is what PostgreSQL refuses
const NUL = /\u0000/g;

/**
 * A string PostgreSQL stores as it is, in a text column and inside jsonb: without U+0000 (neither
 * type can hold it), with each unpaired UTF-16 surrogate replaced by U+FFFD (jsonb refuses its
 * `\ud800` escape; UTF-8 has no form for it), and at most `maxChars` UTF-16 units long. A longer
 * one is cut before the limit, never between the two halves of a pair, and ends with
 * {@link TRUNCATION_MARK}. Documents, file names and remote error messages are caller-controlled:
 * anything derived from them passes here before it is written.
 */
export function storableText(s: string, maxChars: number): string {
  if (!Number.isInteger(maxChars) || maxChars < 0) throw new RangeError(`maxChars must be a non-negative integer, got ${maxChars}`);
  const clean = s.replace(NUL, '').replace(LONE_SURROGATE, '\uFFFD');
  if (clean.length <= maxChars) return clean;
  if (maxChars < TRUNCATION_MARK.length) return '';
  let end = maxChars - TRUNCATION_MARK.length;
  // Every high surrogate left is followed by its low one: one just before the cut is a pair's half.
  const last = clean.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${clean.slice(0, end)}${TRUNCATION_MARK}`;
}
