import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { storableText } from '../../agents/shared/storable-text.js';
import { createTestSchema } from '../mcp/helpers.js';
import { anyText, createStoreTable, storeEach } from '../helpers/storable-strings.js';

// eslint-disable-next-line no-control-regex -- U+0000 is one of the two things PostgreSQL refuses
const NOT_STORABLE = /\u0000|\p{Cs}/u;

describe('storableText against PostgreSQL (property-based)', () => {
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let client: pg.Client;
  before(async () => {
    schema = await createTestSchema();
    client = new pg.Client({ connectionString: schema.urlFor() });
    await client.connect();
    await createStoreTable(client, 'stored');
  });
  after(async () => {
    await client?.end();
    await schema?.drop();
  });

  const sample = fc.record({ s: anyText(50), max: fc.integer({ min: 0, max: 45 }) });

  it('is short enough, idempotent, and leaves a storable string within the limit as it is', () => {
    fc.assert(fc.property(sample, ({ s, max }) => {
      const out = storableText(s, max);
      assert.ok(out.length <= max, `${out.length} > ${max}`);
      assert.equal(storableText(out, max), out);
      assert.doesNotMatch(out, NOT_STORABLE);
      if (!NOT_STORABLE.test(s) && s.length <= max) assert.equal(out, s);
    }), { numRuns: 5000 });
  });

  it('is stored in a text column and inside jsonb (as key and value) and reads back unchanged', async () => {
    await fc.assert(fc.asyncProperty(fc.array(sample, { minLength: 1, maxLength: 100 }), async (batch) => {
      const outs = batch.map(({ s, max }) => storableText(s, max));
      const asText = await storeEach(client, 'stored', 't', outs);
      const asJsonb = await storeEach(client, 'stored', 'j', outs.map((out) => JSON.stringify({ [out]: [out] })));
      outs.forEach((out, i) => {
        assert.deepEqual(asText[i], { ok: true, value: out }, JSON.stringify(batch[i]));
        assert.deepEqual(asJsonb[i], { ok: true, value: { [out]: [out] } }, JSON.stringify(batch[i]));
      });
    }), { numRuns: 50 });
  });

  // Fixed cases the generator reaches only by chance: a cut right after a pair's high half, a
  // high half left alone by the cut of its low one, and strings that are nothing but refusals.
  it('stores the edge cases of the cut and of the cleaning', async () => {
    const cases: [string, number][] = [
      ['abc😀def', 5], ['abcd😀', 5], ['😀😀', 3], ['\ud83d\ud83d\ude00', 2], ['\u0000\u0000', 1], ['\ud800\udbff\udc00x', 2], ['a\u0000😀', 1],
    ];
    const outs = cases.map(([s, max]) => storableText(s, max));
    const stored = await storeEach(client, 'stored', 't', outs);
    assert.deepEqual(stored, outs.map((value) => ({ ok: true, value })));
  });
});
