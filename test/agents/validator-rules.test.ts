import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseJson } from '../../agents/extractor/parse-json.js';
import type { DocumentRecord } from '../../agents/shared/documents.js';
import { evaluate } from '../../agents/validator/evaluate.js';

/** The field_formats verdict on a JSON document holding one `email` field. */
function emailVerdict(email: string): string | undefined {
  const bytes = Buffer.from(JSON.stringify({ email }));
  const extracted = { format: 'json', ...parseJson(bytes) } as Record<string, unknown>;
  const document = { sha256: 'x', size_bytes: bytes.length, filename: 'a.json' } as DocumentRecord;
  const report = evaluate({ document, extracted, objectSha256: 'x', objectSize: bytes.length });
  return report.rules.find((result) => result.rule === 'field_formats')?.outcome;
}

describe('validator: field formats', () => {
  // Over 254 characters a value is no address (RFC 5321), and is refused before the pattern runs:
  // on a long value the old pattern backtracked for a time quadratic in its length (a 200 KB field
  // held the validator for 27 s).
  it('tells well-formed email addresses from malformed ones, and refuses one over 254 characters', () => {
    for (const good of ['a@b.co', 'john.doe@example.co.uk', `${'a'.repeat(64)}@${'b'.repeat(180)}.example`]) assert.equal(emailVerdict(good), 'passed', good);
    for (const bad of ['a@b', 'a@b..c', 'a@.b.c', 'a b@c.d', `${'a'.repeat(64)}@${'b'.repeat(190)}.example`]) assert.equal(emailVerdict(bad), 'failed', bad.slice(0, 40));
  });
});
