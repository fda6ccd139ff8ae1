import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentDigest, parseContentDigest, sha256 } from '../../../proxy/integrity/digest.js';

const body = '{"jsonrpc":"2.0","id":1,"method":"get_document"}';
const digest = sha256(body);
const b64 = digest.toString('base64');
const other = sha256('another body').toString('base64');

describe('parseContentDigest (RFC 9530 over an RFC 8941 dictionary)', () => {
  it('reads what contentDigest writes', () => {
    assert.deepEqual(parseContentDigest(contentDigest(body)), digest);
  });

  it('finds sha-256 among other algorithms, with parameters', () => {
    assert.deepEqual(parseContentDigest(`sha-512=:${sha256('x').toString('base64')}:, sha-256=:${b64}:`), digest);
    assert.deepEqual(parseContentDigest(`sha-256=:${b64}:;note=1`), digest);
  });

  it('takes the last of repeated members, as every RFC 8941 parser does', () => {
    assert.deepEqual(parseContentDigest(`sha-256=:${other}:, sha-256=:${b64}:`), digest);
  });

  for (const [name, header] of [
    ['whitespace around =', `sha-256 = :${b64}:`],
    ['a malformed member beside a good one', `??, sha-256=:${b64}:`],
    ['a trailing comma', `sha-256=:${b64}:,`],
    ['a token instead of bytes', 'sha-256=abc'],
    ['an inner list', `sha-256=(:${b64}:)`],
    ['a digest of the wrong length', `sha-256=:${Buffer.alloc(20).toString('base64')}:`],
    ['no sha-256 member', 'md5=:abc:'],
    ['an empty field', ''],
  ] as const) {
    it(`refuses ${name}`, () => {
      assert.equal(parseContentDigest(header), undefined);
    });
  }
});
