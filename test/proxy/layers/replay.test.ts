import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Principal, RequestContext } from '../../../proxy/context.js';
import type { Denial } from '../../../proxy/denials.js';
import { replayLayer } from '../../../proxy/layers/replay.js';
import { loadPolicy } from '../../../proxy/policy/load.js';
import { MemoryOneTimeIds } from '../../../proxy/stores/one-time-ids.js';
import { RBAC_FILE, writePolicy } from '../../helpers/harness.js';

const policyWith = (integrity: string) => loadPolicy(writePolicy(`service: replay-layer
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
integrity: ${integrity}
methods:
  get_document: {}
`));

const principal = (subject: string): Principal => ({ subject, clientId: subject, roles: [], jti: subject, issuedAt: 0, expiresAt: 0, boundKeyThumbprint: undefined });

/** What the replay layer reads of a request: the verified proof and its caller. */
const request = (jti: string, issuedAt: number, caller: string) => ({ proof: { jti, thumbprint: 'key', issuedAt }, principal: principal(caller) }) as unknown as RequestContext;

describe('replay layer', () => {
  // replay_store_failure: allow trades replay protection for availability while Redis is down. The
  // in-memory store is not down when it cannot tell an id it forgot early from a new one: that id
  // may well be a replay, and docs/integrity.md promises it is never accepted twice.
  it('refuses a proof the in-memory store forgot early even where the policy allows a failing store', async () => {
    let now = 1_000_000;
    const errors: string[] = [];
    let recovered = 0;
    const ids = new MemoryOneTimeIds({ maxEntries: 100, maxPerCaller: 10, now: () => now });
    const layer = replayLayer(policyWith('{ dpop: required, replay_store_failure: allow }'), {
      ids, now: () => now, onStoreError: (_error, fallback, first) => errors.push(`${fallback}${first ? ' (outage)' : ''}`), onStoreRecovered: () => recovered++,
    });
    const captured = request('victim-1', now / 1000, 'victim');
    assert.equal(await layer.check(captured), undefined);
    // The victim is busy: ten more proofs push its first id out of its share of memory.
    for (let i = 0; i < 10; i++) {
      now += 100;
      assert.equal(await layer.check(request(`victim-${i + 2}`, now / 1000, 'victim')), undefined);
    }
    const replayed = (await layer.check(captured)) as Denial | undefined;
    assert.equal(replayed?.code, 'replay.store_unavailable', 'the captured proof, replayed within its window, is not forwarded');
    assert.deepEqual(errors, ['deny']);
    assert.equal(await layer.check(request('victim-fresh', now / 1000, 'victim')), undefined, 'fresh proofs still pass');
    // Counted, but no outage: replays of forgotten ids among fresh proofs start and end none.
    assert.equal((await layer.check(captured) as Denial | undefined)?.code, 'replay.store_unavailable');
    assert.equal(await layer.check(request('other-1', now / 1000, 'other')), undefined);
    assert.deepEqual(errors, ['deny', 'deny']);
    assert.equal(recovered, 0);
  });
});
