import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createSchemaCompiler } from '../../proxy/policy/ajv.js';
import { whyPatternUnsafe } from '../../proxy/policy/safe-pattern.js';
import { checkPolicies } from '../../proxy/policy/tooling/check.js';
import { CLEAN_RBAC, CLEAN_SERVICE, policyDir } from './fixtures.js';

// Patterns that run in time linear in the string's length: the shipped ones, and common shapes.
const ACCEPTED = [
  '^uploads/',
  '^[^/\\\\\\u0000-\\u001f]+$',
  '^[a-z0-9.+-]+/[a-z0-9.+-]+$',
  '^[a-z]+\\.[a-z_]+$',
  '^\\d+x',
  '^[a-z]+(\\.[a-z]+)*$',
  '^(?:\\d{1,3}\\.){3}\\d{1,3}$',
  '^https?://[^/]+/',
  '^\\d+\\.\\d+\\.\\d+(-[0-9A-Za-z.-]+)?$',
  '^(?:ab|cd)+$',
  '^[0-9a-f]{64}$',
  '^\\p{L}+$',
  '^(?<word>[a-z]+)-[0-9]+$',
  '^[a-z]+$|archive',
  '^(image/png|image/jpeg|image/gif)$',
  '^(foo|foobar)-(x|xy)$',
  'a'.repeat(1000),
  // No repeat: tried at each position, each try bounded by the pattern.
  '\\.pdf$',
  'colou?r',
  '',
];

// Each refused pattern, with the reason it must give.
const REFUSED: { pattern: string; why: RegExp }[] = [
  // Exponential: 25 characters take seconds.
  { pattern: '^(a+)+$', why: /'a\+' can go on with a character that could also come after it/ },
  { pattern: '(a+)+$', why: /'a\+' can go on/ },
  { pattern: '^(\\d+)*$', why: /'\\d\+' can go on/ },
  { pattern: '^(\\w+\\s?)*$', why: /'\\w\+' can go on/ },
  { pattern: '^(a?){30}a{30}$', why: /'a\?' can go on/ },
  { pattern: '^(a|a)+$', why: /the alternatives of '\(a\|a\)' can start with the same character/ },
  { pattern: '^(?:ab|ad)+$', why: /the alternatives of '\(\?:ab\|ad\)'/ },
  { pattern: '^(?:a|)+$', why: /'\(\?:a\|\)\+' repeats something that can match nothing/ },
  { pattern: '^([a-z]+\\.?)+$', why: /'\[a-z\]\+' can go on/ },
  { pattern: '^(a)\\1$', why: /backreference/ },
  { pattern: '^(?<n>a)\\k<n>$', why: /backreference/ },
  { pattern: '^(?=a)a', why: /lookahead and lookbehind/ },
  { pattern: '(?<!a)b', why: /lookahead and lookbehind/ },
  // Polynomial: seconds on a few hundred or thousand characters.
  { pattern: '^.*.*x', why: /'\.\*' can go on/ },
  { pattern: '^\\d+\\d+x', why: /'\\d\+' can go on/ },
  { pattern: '^.*foo$', why: /'\.\*' can go on/ },
  { pattern: '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$', why: /'\[a-zA-Z0-9\.-\]\+' can go on/ },
  { pattern: '\\d+x', why: /must start with \^/ },
  { pattern: '[0-9a-f]{64}', why: /must start with \^/ },
  { pattern: '^a+|b+', why: /must start with \^/ },
  // What it overlaps is worked out on characters, not on how they are written.
  { pattern: '^\\uD83D\\uDE00+\\u{1F600}$', why: /can go on/ },
  { pattern: '^[^\\p{L}]+\\p{L}$', why: /can go on/ },
  { pattern: '^(a', why: /not a valid regular expression/ },
  // Choices outside repeats whose alternatives start alike: each doubles the ways to try.
  { pattern: '^(a|ab)(a|ab)(a|ab)(a|ab)(a|ab)c$', why: /give one attempt 32 ways to go, more than 16/ },
  { pattern: 'a'.repeat(1001), why: /longer than 1000 characters/ },
];

describe('whyPatternUnsafe', () => {
  for (const pattern of ACCEPTED) {
    it(`accepts ${JSON.stringify(pattern.slice(0, 60))}`, () => assert.equal(whyPatternUnsafe(pattern), undefined));
  }
  for (const { pattern, why } of REFUSED) {
    it(`refuses ${JSON.stringify(pattern.slice(0, 60))}`, () => assert.match(whyPatternUnsafe(pattern) ?? 'accepted', why));
  }
});

describe('policy load: unsafe patterns, where they are written', () => {
  const unsafe = (paths: string[], dir: string): string[] => checkPolicies(paths).diagnostics
    .filter((d) => d.rule === 'unsafe-pattern')
    .map((d) => `${d.file.slice(dir.length + 1)}:${d.line}:${d.column} ${d.message}`);

  it('in a method\'s inline params schema', () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document:\n    params:\n      type: object\n      properties:\n        id: { type: string, pattern: "^(a+)+$" }') });
    assert.deepEqual(unsafe([dir], dir), [
      "services/docs.yaml:14:38 /methods/get_document/params/properties/id/pattern: pattern '^(a+)+$' is refused: 'a+' can go on with a character that could also come after it: a failing match tries every split between the two (make them exclusive, e.g. [^.]+ before \\.)",
    ]);
  });

  it('in a patternProperties key, a propertyNames pattern and under items', () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('get_document: { params: { type: object } }', [
      'get_document:',
      '    params:',
      '      type: object',
      '      propertyNames: { pattern: "\\\\w+:" }',
      '      patternProperties:',
      '        "^(x|xy)+$": { type: array, items: { type: string, pattern: "^.*.*$" } }',
    ].join('\n')) });
    assert.deepEqual(unsafe([dir], dir).map((line) => line.split(': pattern')[0]), [
      'services/docs.yaml:13:33 /methods/get_document/params/propertyNames/pattern',
      'services/docs.yaml:15:9 /methods/get_document/params/patternProperties/^(x|xy)+$',
      'services/docs.yaml:15:69 /methods/get_document/params/patternProperties/^(x|xy)+$/items/pattern',
    ]);
  });

  it("in a $ref'd schema file, at its line there", () => {
    const service = CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc.json } }');
    const schema = JSON.stringify({ type: 'object', properties: { id: { type: 'string', pattern: '^(\\d+)*$' } } }, null, 2);
    const dir = policyDir({ service, extra: { 'schemas/doc.json': schema } });
    assert.deepEqual(unsafe([dir], dir).map((line) => line.split(' /')[0]), ['schemas/doc.json:6:18']);
  });

  it("in a role's argument restriction in the rbac file", () => {
    const dir = policyDir({ rbac: CLEAN_RBAC.replace('pattern: "^uploads/"', 'pattern: "uploads/.+"') });
    assert.deepEqual(unsafe([dir], dir).map((line) => line.split(' /')[0]), ['rbac.yaml:15:43']);
  });

  it('not in data: an enum, a const, a default or examples holding a "pattern" key', () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { type: object, default: { pattern: "(a+)+" }, properties: { pattern: { enum: [{ pattern: "(a+)+" }] } } } }') });
    assert.deepEqual(checkPolicies([dir]).diagnostics, []);
  });

  it('passes the shipped policies (test/policy/check.test.ts checks them all strictly)', () => {
    assert.deepEqual(unsafe([join(process.cwd(), 'policies')], join(process.cwd(), 'policies')), []);
  });
});

describe('the schema compiler itself', () => {
  it('refuses an unsafe pattern wherever a schema holds it, not only where the loader looks', () => {
    assert.throws(() => createSchemaCompiler().compile({ not: { type: 'string', pattern: '^(a+)+$' } }), /pattern '\^\(a\+\)\+\$' is refused/);
    assert.throws(() => createSchemaCompiler().compile({ type: 'object', patternProperties: { '(a|a)*': { type: 'string' } } }), /is refused/);
    assert.equal(createSchemaCompiler().compile({ type: 'string', pattern: '^[a-z]+$' })('abc'), true);
  });
});
