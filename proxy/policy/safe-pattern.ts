import { ANY, DIGIT, DOT, SPACE, WORD, complement, overlap, single, union, type CharSet } from './char-set.js';

/**
 * Is a JSON-Schema `pattern` safe to run on what a caller sends? ajv runs it as
 * `new RegExp(source, 'u')` on V8's backtracking engine, where `^(a+)+$` takes 1.4 s on 25
 * characters and even `\d+x` takes 9 s on 100 000 digits, being tried again at each position.
 *
 * The check accepts a pattern only when it can show that matching takes time linear in the
 * string's length, and refuses whenever it is unsure. An accepted pattern
 *
 * 1. has no backreference and no lookaround (`\1`, `\k<name>`, `(?=`, `(?!`, `(?<=`, `(?<!`);
 * 2. is deterministic: each repeat of variable count (`*`, `+`, `?`, `{n,m}`) cannot match the
 *    empty string, and no character that can start it can also come right after it (next in the
 *    pattern, or, inside a repeated group, the group's own start); and the alternatives of each
 *    choice inside a repeated group start with different characters;
 * 3. starts with `^` in each alternative that repeats anything (`{n}` included);
 * 4. has at most 16 ways through its other choices: those outside repeats whose alternatives can
 *    start alike (`(png|pdf)`), multiplied; and at most 1 000 characters.
 *
 * Why that is linear: by 2, a repeat whose continuation fails gives its characters back one at a
 * time and each attempt fails on the first character (it cannot start what follows), and one
 * character decides whether a repeated group goes round again and which alternative it takes: no
 * split of the same characters is ever tried twice, so one attempt costs the string's length times
 * a factor of the pattern's size. By 3 there is one attempt, not one per position. By 4 the
 * choices left to try one after the other multiply that by 16 at most: `(a|a)(a|a)…` would
 * otherwise double it with each group.
 *
 * Why not run the refused patterns on a linear-time engine (re2js, RE2's port) instead: RE2 reads
 * the same text differently. Its `\s` is ASCII space only and its `.` matches U+2028, so
 * `^[^\s]+$` would let a no-break space through that V8 refuses (checked with re2js 2.10), and
 * re2js's translation reads `\k<name>` as the letters. A pattern must mean what the policy author
 * tested: one engine, ECMAScript semantics, and a refusal when its cost cannot be bounded.
 */
export function whyPatternUnsafe(source: string): string | undefined {
  if (Array.from(source).length > MAX_PATTERN_LENGTH) return `longer than ${MAX_PATTERN_LENGTH} characters`;
  try {
    new RegExp(source, 'u');
  } catch (error) {
    return `not a valid regular expression: ${(error as Error).message}`;
  }
  try {
    checkPattern(new PatternParser(source).parse());
    return undefined;
  } catch (error) {
    if (error instanceof Unsafe) return error.message;
    throw error;
  }
}

class Unsafe extends Error {}

interface Chars { readonly kind: 'chars'; readonly set: CharSet }
/** ^ (start), $ (end), \b and \B (neither): they match no character. */
interface Assertion { readonly kind: 'assertion'; readonly at: 'start' | 'end' | 'boundary' }
interface Group { readonly kind: 'group'; readonly alternatives: readonly Sequence[]; readonly text: string }
interface Repeat { readonly kind: 'repeat'; readonly body: Chars | Group; readonly min: number; readonly max: number; readonly text: string }
type Term = Chars | Assertion | Group | Repeat;
type Sequence = readonly Term[];

/** A parser of the patterns `new RegExp(source, 'u')` accepted (so it need not report syntax errors). */
class PatternParser {
  readonly #chars: string[];
  #at = 0;

  constructor(source: string) {
    this.#chars = Array.from(source);
  }

  parse(): Sequence[] {
    const alternatives = this.#alternatives();
    if (this.#at < this.#chars.length) throw new Unsafe(`unexpected '${this.#chars[this.#at]}'`);
    return alternatives;
  }

  #alternatives(): Sequence[] {
    const alternatives = [this.#sequence()];
    while (this.#eat('|')) alternatives.push(this.#sequence());
    return alternatives;
  }

  #sequence(): Sequence {
    const terms: Term[] = [];
    while (this.#at < this.#chars.length && this.#peek() !== '|' && this.#peek() !== ')') terms.push(this.#term());
    return terms;
  }

  #term(): Term {
    const start = this.#at;
    const atom = this.#atom();
    const bounds = this.#quantifier();
    if (!bounds) return atom;
    if (atom.kind === 'assertion') throw new Unsafe(`'${this.#text(start)}' repeats an assertion`);
    return { kind: 'repeat', body: atom, ...bounds, text: this.#text(start) };
  }

  #atom(): Chars | Assertion | Group {
    const start = this.#at;
    const char = this.#next();
    switch (char) {
      case '^': return { kind: 'assertion', at: 'start' };
      case '$': return { kind: 'assertion', at: 'end' };
      case '.': return { kind: 'chars', set: DOT };
      case '[': return { kind: 'chars', set: this.#class() };
      case '\\': return this.#atomEscape();
      case '(': {
        if (this.#eat('?')) {
          if (this.#peek() === '=' || this.#peek() === '!' || (this.#peek() === '<' && (this.#peek(1) === '=' || this.#peek(1) === '!'))) {
            throw new Unsafe('lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not accepted: their cost adds up at every position');
          }
          if (this.#eat('<')) this.#skipPast('>');
          else if (!this.#eat(':')) throw new Unsafe(`the group syntax '(?${this.#peek()}' is not understood by this check`);
        }
        const alternatives = this.#alternatives();
        this.#next();
        return { kind: 'group', alternatives, text: this.#text(start) };
      }
      default: return { kind: 'chars', set: single(char) };
    }
  }

  #atomEscape(): Chars | Assertion {
    const char = this.#peek();
    if (char === 'b' || char === 'B') {
      this.#at++;
      return { kind: 'assertion', at: 'boundary' };
    }
    if (char === 'k' || /^[1-9]$/.test(char)) {
      throw new Unsafe('a backreference (\\1, \\k<name>) is not accepted: matching one can take exponential time');
    }
    return { kind: 'chars', set: this.#charEscape() };
  }

  /** After a backslash, outside or inside a class: the characters it stands for. */
  #charEscape(): CharSet {
    const char = this.#next();
    switch (char) {
      case 'd': return DIGIT;
      case 'D': return complement(DIGIT);
      case 'w': return WORD;
      case 'W': return complement(WORD);
      case 's': return SPACE;
      case 'S': return complement(SPACE);
      // Unicode properties: taken as any character, so what they overlap is never underestimated.
      case 'p':
      case 'P':
        this.#skipPast('}');
        return ANY;
      case 'b': return single('\b');
      case '0': return single('\0');
      case 't': return single('\t');
      case 'n': return single('\n');
      case 'v': return single('\v');
      case 'f': return single('\f');
      case 'r': return single('\r');
      case 'c': return single(String.fromCodePoint((this.#next().codePointAt(0) as number) % 32));
      case 'x': {
        const code = this.#hex(2);
        return [[code, code]];
      }
      case 'u': return this.#unicodeEscape();
      default: return single(char);
    }
  }

  #unicodeEscape(): CharSet {
    if (this.#eat('{')) {
      const start = this.#at;
      this.#skipPast('}');
      const code = Number.parseInt(this.#chars.slice(start, this.#at - 1).join(''), 16);
      return [[code, code]];
    }
    let code = this.#hex(4);
    // With the u flag, \uD83D\uDE00 is one character (U+1F600), not two.
    if (code >= 0xd800 && code <= 0xdbff && this.#peek() === '\\' && this.#peek(1) === 'u' && /^[dD][c-fC-F]$/.test(`${this.#peek(2)}${this.#peek(3)}`)) {
      this.#at += 2;
      code = 0x10000 + ((code - 0xd800) << 10) + (this.#hex(4) - 0xdc00);
    }
    return [[code, code]];
  }

  #hex(length: number): number {
    const digits = this.#chars.slice(this.#at, this.#at + length).join('');
    this.#at += length;
    return Number.parseInt(digits, 16);
  }

  #class(): CharSet {
    const negated = this.#eat('^');
    const items: CharSet[] = [];
    let property = false;
    while (!this.#eat(']')) {
      property ||= this.#peek() === '\\' && (this.#peek(1) === 'p' || this.#peek(1) === 'P');
      const from = this.#classAtom();
      if (this.#peek() === '-' && this.#peek(1) !== ']') {
        this.#at++;
        const to = this.#classAtom();
        items.push([[(from[0] as readonly [number, number])[0], (to[0] as readonly [number, number])[0]]]);
      } else {
        items.push(from);
      }
    }
    // A negated class with a property in it is not known either: any character.
    if (property) return ANY;
    const set = union(...items);
    return negated ? complement(set) : set;
  }

  #classAtom(): CharSet {
    const char = this.#next();
    return char === '\\' ? this.#charEscape() : single(char);
  }

  #quantifier(): { readonly min: number; readonly max: number } | undefined {
    let bounds: { min: number; max: number } | undefined;
    if (this.#eat('*')) bounds = { min: 0, max: Infinity };
    else if (this.#eat('+')) bounds = { min: 1, max: Infinity };
    else if (this.#eat('?')) bounds = { min: 0, max: 1 };
    else if (this.#eat('{')) {
      const min = this.#number();
      const max = !this.#eat(',') ? min : this.#peek() === '}' ? Infinity : this.#number();
      this.#next();
      bounds = { min, max };
    }
    // A lazy repeat (+?) tries the same splits in another order: no difference here.
    if (bounds) this.#eat('?');
    return bounds;
  }

  #number(): number {
    const start = this.#at;
    while (/^\d$/.test(this.#peek())) this.#at++;
    return Number(this.#chars.slice(start, this.#at).join(''));
  }

  #skipPast(char: string): void {
    while (this.#next() !== char) continue;
  }

  #peek(ahead = 0): string {
    return this.#chars[this.#at + ahead] ?? '';
  }

  #next(): string {
    const char = this.#chars[this.#at++];
    if (char === undefined) throw new Unsafe('unexpected end of the pattern');
    return char;
  }

  #eat(char: string): boolean {
    if (this.#peek() !== char) return false;
    this.#at++;
    return true;
  }

  #text(start: number): string {
    return this.#chars.slice(start, this.#at).join('');
  }
}

// Past this, a pattern is refused outright: the check walks it recursively, and the pattern's
// own cost per character grows with its size.
const MAX_PATTERN_LENGTH = 1000;
// Choices outside repeats whose alternatives start alike are tried one after the other: one attempt
// can go as many ways as their alternatives multiplied, which this bounds.
const MAX_WAYS = 16;

function checkPattern(alternatives: readonly Sequence[]): void {
  const ways = { count: 1 };
  choose(alternatives.map((sequence) => firstOfSequence(sequence, [])), undefined, ways);
  for (const sequence of alternatives) {
    checkSequence(sequence, [], false, ways);
    const first = sequence[0];
    if (sequence.some(repeats) && !(first?.kind === 'assertion' && first.at === 'start')) {
      throw new Unsafe('a pattern that repeats (*, +, {n}, {n,m}) must start with ^: without it, it is tried again at every position of the string');
    }
  }
  if (ways.count > MAX_WAYS) {
    throw new Unsafe(`its choices (a|b) whose alternatives can start with the same character give one attempt ${ways.count} ways to go, more than ${MAX_WAYS}`);
  }
}

/** Checks rule 2 on each term of a sequence, knowing what can come after it. */
function checkSequence(sequence: Sequence, after: CharSet, inRepeat: boolean, ways: { count: number }): void {
  let next = after;
  for (let i = sequence.length - 1; i >= 0; i--) {
    const term = sequence[i] as Term;
    checkTerm(term, next, inRepeat, ways);
    next = first(term, next);
  }
}

function checkTerm(term: Term, after: CharSet, inRepeat: boolean, ways: { count: number }): void {
  if (term.kind === 'group') {
    choose(term.alternatives.map((alternative) => firstOfSequence(alternative, after)), inRepeat ? term : undefined, ways);
    for (const alternative of term.alternatives) checkSequence(alternative, after, inRepeat, ways);
  } else if (term.kind === 'repeat') {
    const own = first(term.body, []);
    if (term.min < term.max) {
      if (nullable(term.body)) throw new Unsafe(`'${term.text}' repeats something that can match nothing`);
      if (overlap(own, after)) {
        throw new Unsafe(`'${term.text}' can go on with a character that could also come after it: a failing match tries every split between the two (make them exclusive, e.g. [^.]+ before \\.)`);
      }
    }
    if (term.body.kind === 'group') checkTerm(term.body, term.max > 1 ? union(own, after) : after, inRepeat || term.max > 1, ways);
  }
}

/** A choice between alternatives that start with these characters: refused inside a repeat when two may start alike, counted outside. */
function choose(firsts: readonly CharSet[], repeatedGroup: Group | undefined, ways: { count: number }): void {
  if (!firsts.some((set, i) => firsts.slice(i + 1).some((other) => overlap(set, other)))) return;
  if (repeatedGroup) throw new Unsafe(`the alternatives of '${repeatedGroup.text}' can start with the same character, inside a repeat: a failing match tries each combination`);
  ways.count *= firsts.length;
}

/** The characters that can start a match of the term, with `after` when it can match nothing. */
function first(term: Term, after: CharSet): CharSet {
  switch (term.kind) {
    case 'chars': return term.set;
    // Nothing can follow $ (no m flag): it ends what may come next.
    case 'assertion': return term.at === 'end' ? [] : after;
    case 'group': return union(...term.alternatives.map((alternative) => firstOfSequence(alternative, after)));
    case 'repeat': return term.min === 0 ? union(first(term.body, after), after) : first(term.body, after);
  }
}

function firstOfSequence(sequence: Sequence, after: CharSet): CharSet {
  return sequence.reduceRight((next, term) => first(term, next), after);
}

function nullable(term: Term): boolean {
  switch (term.kind) {
    case 'chars': return false;
    case 'assertion': return true;
    case 'group': return term.alternatives.some((alternative) => alternative.every(nullable));
    case 'repeat': return term.min === 0 || nullable(term.body);
  }
}

/** Whether the term repeats anything more than once. */
function repeats(term: Term): boolean {
  if (term.kind === 'repeat') return term.max > 1 || repeats(term.body);
  if (term.kind === 'group') return term.alternatives.some((alternative) => alternative.some(repeats));
  return false;
}
