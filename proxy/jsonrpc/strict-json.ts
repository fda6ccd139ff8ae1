/**
 * A strict JSON reader for untrusted bodies. JSON.parse keeps the last of duplicate keys and
 * happily builds `__proto__` members and 100 000-deep arrays; this pass rejects those before
 * JSON.parse runs (RFC 8259 §4: names SHOULD be unique — here they MUST be).
 */
export type StrictJsonResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly problem: 'parse' | 'duplicate_key' | 'forbidden_key' | 'too_deep'; readonly detail: string };

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
// ignoreBOM keeps a leading byte order mark in the text, where the scanner refuses it: the
// agent gets the bytes as they came, and a parser there that does not skip a BOM (JSON.parse)
// would read another document than the one checked here. RFC 8259 §8.1: senders MUST NOT add one.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const [QUOTE, BACKSLASH, COMMA, COLON] = [0x22, 0x5c, 0x2c, 0x3a];
const [OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET, CLOSE_BRACKET] = [0x7b, 0x7d, 0x5b, 0x5d];

class JsonProblem extends Error {
  readonly problem: 'parse' | 'duplicate_key' | 'forbidden_key' | 'too_deep';
  constructor(problem: JsonProblem['problem'], detail: string) {
    super(detail);
    this.problem = problem;
  }
}

export function parseStrictJson(bytes: Buffer, maxDepth: number): StrictJsonResult {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, problem: 'parse', detail: 'body is not valid UTF-8' };
  }
  try {
    const end = new Scanner(text, maxDepth).document();
    if (end !== text.length) throw new JsonProblem('parse', `unexpected data at offset ${end}`);
  } catch (error) {
    if (error instanceof JsonProblem) return { ok: false, problem: error.problem, detail: error.message };
    throw error;
  }
  return { ok: true, value: JSON.parse(text) as unknown };
}

class Scanner {
  readonly #text: string;
  readonly #maxDepth: number;
  #i = 0;

  constructor(text: string, maxDepth: number) {
    this.#text = text;
    this.#maxDepth = maxDepth;
  }

  document(): number {
    this.#ws();
    this.#value(0);
    this.#ws();
    return this.#i;
  }

  #ws(): void {
    const text = this.#text;
    let c = text.charCodeAt(this.#i);
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = text.charCodeAt(++this.#i);
  }

  #fail(what: string): never {
    throw new JsonProblem('parse', `${what} at offset ${this.#i}`);
  }

  #value(depth: number): void {
    const text = this.#text;
    const c = text.charCodeAt(this.#i);
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth + 1 > this.#maxDepth) throw new JsonProblem('too_deep', `nesting deeper than ${this.#maxDepth}`);
      if (c === OPEN_BRACE) this.#object(depth + 1);
      else this.#array(depth + 1);
    } else if (c === QUOTE) {
      this.#string(false);
    } else if (c === 0x74 /* t */ || c === 0x66 /* f */ || c === 0x6e /* n */) {
      const word = c === 0x74 ? 'true' : c === 0x66 ? 'false' : 'null';
      if (!text.startsWith(word, this.#i)) this.#fail('invalid literal');
      this.#i += word.length;
    } else {
      NUMBER.lastIndex = this.#i;
      if (!NUMBER.test(text)) this.#fail('unexpected character');
      this.#i = NUMBER.lastIndex;
    }
  }

  #object(depth: number): void {
    const text = this.#text;
    this.#i++;
    this.#ws();
    if (text.charCodeAt(this.#i) === CLOSE_BRACE) {
      this.#i++;
      return;
    }
    const keys = new Set<string>();
    for (;;) {
      this.#ws();
      if (text.charCodeAt(this.#i) !== QUOTE) this.#fail('expected a key');
      const key = this.#string(true);
      if (FORBIDDEN_KEYS.has(key)) throw new JsonProblem('forbidden_key', `key '${key}' is not allowed`);
      if (keys.has(key)) throw new JsonProblem('duplicate_key', `key '${key.slice(0, 64)}' appears twice`);
      keys.add(key);
      this.#ws();
      if (text.charCodeAt(this.#i) !== COLON) this.#fail("expected ':'");
      this.#i++;
      this.#ws();
      this.#value(depth);
      this.#ws();
      const next = text.charCodeAt(this.#i++);
      if (next === CLOSE_BRACE) return;
      if (next !== COMMA) this.#fail("expected ',' or '}'");
    }
  }

  #array(depth: number): void {
    const text = this.#text;
    this.#i++;
    this.#ws();
    if (text.charCodeAt(this.#i) === CLOSE_BRACKET) {
      this.#i++;
      return;
    }
    for (;;) {
      this.#ws();
      this.#value(depth);
      this.#ws();
      const next = text.charCodeAt(this.#i++);
      if (next === CLOSE_BRACKET) return;
      if (next !== COMMA) this.#fail("expected ',' or ']'");
    }
  }

  /** Scans a string starting at '"'; returns its decoded value when `decode` (keys), else ''. */
  #string(decode: boolean): string {
    const text = this.#text;
    const start = this.#i;
    let escaped = false;
    for (let i = start + 1; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.#i = i + 1;
        if (!decode) return '';
        return escaped ? (JSON.parse(text.slice(start, i + 1)) as string) : text.slice(start + 1, i);
      }
      if (c < 0x20) {
        this.#i = i;
        this.#fail('control character in string');
      }
      if (c === BACKSLASH) {
        escaped = true;
        const e = text[i + 1];
        if (e === 'u') {
          if (!HEX4.test(text.slice(i + 2, i + 6))) {
            this.#i = i;
            this.#fail('invalid \\u escape');
          }
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 1;
        } else {
          this.#i = i;
          this.#fail('invalid escape');
        }
      }
    }
    this.#i = text.length;
    return this.#fail('unterminated string');
  }
}
