import { decodePercentRuns } from '../proxy/http/percent.js';
import { ToolError } from './errors.js';

/** Where S3 tools may read and write. */
export interface KeyPolicy {
  /** Each ends with `/`; a key must start with one of them. Default `uploads/`, `archive/`. */
  allowedPrefixes: readonly string[];
  /** Cap on a key's UTF-8 length (S3 allows 1024). */
  maxKeyLength: number;
}

/** The defaults of {@link KeyPolicy}. */
export const DEFAULT_KEY_POLICY: KeyPolicy = { allowedPrefixes: ['uploads/', 'archive/'], maxKeyLength: 1024 };

// C0, DEL and C1 controls: never part of a legitimate document key.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
/**
 * Bidirectional controls (Trojan Source, CVE-2021-42574), as the inside of a character class: a
 * name that reads as invoice.pdf in a listing, a log or a console while it is
 * invoice\u202efdp.exe. Refused in keys here and in document file names (document-tools.ts).
 */
export const BIDI_CONTROLS = '\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
const BIDI = new RegExp(`[${BIDI_CONTROLS}]`, 'u');
/**
 * Invisible characters: Unicode's default-ignorable code points (zero-width space U+200B, word
 * joiner U+2060, zero-width no-break space U+FEFF, soft hyphen U+00AD, Hangul fillers, tag
 * characters U+E0000..U+E0FFF, which spell hidden ASCII text). Two keys that differ only by one
 * read as one in a console, a listing or a log, and a tag run can carry words a reader never sees.
 * Kept: the zero-width non-joiner and joiner (U+200C, U+200D), which Persian and Indic names and
 * emoji sequences need, and the variation selectors U+FE00..U+FE0F (emoji presentation).
 */
const DEFAULT_IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;
const kept = (cp: number) => cp === 0x200c || cp === 0x200d || (cp >= 0xfe00 && cp <= 0xfe0f);

/** The first invisible character of `form` as `U+XXXX`, or undefined. */
function invisibleIn(form: string): string | undefined {
  for (const [ch] of form.matchAll(DEFAULT_IGNORABLE)) {
    const cp = ch.codePointAt(0) as number;
    if (!kept(cp)) return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return undefined;
}
// A lone UTF-16 surrogate: no UTF-8 form, so the bucket would store U+FFFD in its place (two keys
// naming one object) or the S3 client would fail to encode it.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The forms a key may take once something downstream decodes it: the key itself and up to three
 * rounds of percent-decoding, so `%2e%2e/` and `%252e%252e/` are judged like `../`. Each run of
 * escapes decodes on its own: a lone `%` elsewhere in the key does not keep the rest encoded.
 */
function decodedForms(key: string): string[] {
  const forms = [key];
  let current = key;
  for (let i = 0; i < 3; i++) {
    const next = decodePercentRuns(current);
    if (next === current) break;
    forms.push(next);
    current = next;
  }
  return forms;
}

function problem(form: string, kind: 'key' | 'prefix'): string | undefined {
  if (CONTROL.test(form)) return 'contains a control character';
  if (BIDI.test(form)) return 'contains a bidirectional control character';
  const invisible = invisibleIn(form);
  if (invisible) return `contains an invisible character (${invisible})`;
  if (form.includes('\\')) return 'contains a backslash';
  if (form.startsWith('/')) return 'starts with /';
  const segments = form.split('/');
  for (const [i, seg] of segments.entries()) {
    if (seg === '..' || seg === '.') return 'contains a . or .. segment';
    const last = i === segments.length - 1;
    if (seg === '' && !(last && kind === 'prefix')) return last ? 'ends with /' : 'contains an empty segment';
  }
  return undefined;
}

/**
 * A key policy whose prefixes are checked: each must be a folder (end with `/`) that a key could
 * legitimately start with, else `uploads` would also admit `uploads-private/…`. Throws naming
 * the first bad prefix.
 */
export function keyPolicy(allowedPrefixes: readonly string[], maxKeyLength: number): KeyPolicy {
  if (allowedPrefixes.length === 0) throw new Error('at least one allowed prefix is needed');
  for (const prefix of allowedPrefixes) {
    const why = !prefix.endsWith('/')
      ? 'must end with /'
      : prefix.normalize('NFC') !== prefix
        ? 'must be in Unicode NFC'
        : problem(prefix, 'prefix');
    if (why) throw new Error(`allowed prefix ${JSON.stringify(prefix)} ${why}`);
  }
  return Object.freeze({ allowedPrefixes: Object.freeze([...allowedPrefixes]), maxKeyLength });
}

/**
 * Normalises (Unicode NFC) and confines an object key or listing prefix; throws `invalid_key`
 * naming the reason. A prefix may end with `/`; a key may not.
 */
export function normaliseKey(raw: string, policy: KeyPolicy, kind: 'key' | 'prefix' = 'key'): string {
  const key = raw.normalize('NFC');
  const refuse = (why: string) => new ToolError('invalid_key', `${kind} ${why}`);
  if (key.length === 0) throw refuse('is empty');
  if (LONE_SURROGATE.test(key)) throw refuse('is not well-formed Unicode (a lone surrogate)');
  if (Buffer.byteLength(key) > policy.maxKeyLength) throw refuse(`is longer than ${policy.maxKeyLength} bytes`);
  for (const form of decodedForms(key)) {
    const why = problem(form, kind);
    if (why) throw refuse(why);
  }
  if (!policy.allowedPrefixes.some((p) => key.startsWith(p))) {
    throw refuse(`is outside the allowed prefixes (${policy.allowedPrefixes.join(', ')})`);
  }
  return key;
}
