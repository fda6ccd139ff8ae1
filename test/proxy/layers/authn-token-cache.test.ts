import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Principal } from '../../../proxy/context.js';
import { TokenCache } from '../../../proxy/auth/token-cache.js';

const principal = (subject: string): Principal => Object.freeze({ subject, clientId: subject, roles: Object.freeze([]), jti: subject, issuedAt: 0, expiresAt: 100, boundKeyThumbprint: undefined });

describe('authn layer: the verified-token cache, bounded', () => {
  // Two requests carrying one new token both miss the cache, both verify and both set it: the
  // second set pushed out the oldest entry, another caller's token, though nothing was added.
  it('keeps the other callers\' tokens when a token it holds is set again', () => {
    const cache = new TokenCache(2);
    cache.set('a', principal('a'), 100_000);
    cache.set('b', principal('b'), 100_000);
    cache.set('b', principal('b'), 100_000);
    assert.equal(cache.get('a', 0)?.subject, 'a');
    assert.equal(cache.get('b', 0)?.subject, 'b');
  });

  it('drops the oldest entry when a new token comes in full, and nothing when it holds none', () => {
    const cache = new TokenCache(2);
    for (const token of ['a', 'b', 'c']) cache.set(token, principal(token), 100_000);
    assert.deepEqual(['a', 'b', 'c'].map((token) => cache.get(token, 0)?.subject), [undefined, 'b', 'c']);
    const none = new TokenCache(0);
    none.set('a', principal('a'), 100_000);
    assert.equal(none.get('a', 0), undefined);
  });
});
