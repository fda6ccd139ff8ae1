import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { closeRedis, openRedis, redisReady } from '../../proxy/stores/redis.js';
import type { UpResult } from '../../proxy/up/up.js';
import { createTestSchema, PG_URL, startS3rver } from '../mcp/helpers.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from '../proxy/shared-state/helpers.js';
import { startUp, tempDataDir } from './helpers.js';

describe('ca-a2a up on Redis, PostgreSQL and an S3 endpoint', () => {
  // Keys of this run only: two checkouts testing at once never share a budget or a replay cache.
  const prefix = uniquePrefix();
  let data: Awaited<ReturnType<typeof tempDataDir>>;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  let result: UpResult;
  before(async () => {
    data = await tempDataDir();
    schema = await createTestSchema();
    s3 = await startS3rver('ca-a2a-documents');
    result = await startUp(data.dir, [], {
      REDIS_URL,
      CA_A2A_KEY_PREFIX: prefix,
      DATABASE_URL: schema.urlFor(),
      CA_A2A_S3_BUCKET: s3.bucket,
      CA_A2A_S3_ENDPOINT: s3.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    });
  });
  after(async () => {
    await result?.stack.close();
    await s3?.close();
    await schema?.drop();
    await data?.remove();
    await dropPrefix(prefix);
  });

  it('runs the samples with documents in PostgreSQL and objects in the bucket', async () => {
    assert.deepEqual(result.outcomes.map((o) => o.status).sort(), ['archived', 'archived', 'archived', 'failed']);
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const rows = await client.query<{ status: string; archive_key: string | null }>(`SELECT status, archive_key FROM ${schema.schema}.documents ORDER BY filename`);
      assert.equal(rows.rows.length, 4);
      assert.equal(rows.rows.filter((r) => r.archive_key?.startsWith('archive/')).length, 3);
    } finally {
      await client.end();
    }
    const listing = await fetch(`${s3.endpoint}/${s3.bucket}?list-type=2&prefix=archive/`);
    const xml = await listing.text();
    assert.equal((xml.match(/<Key>archive\//g) ?? []).length, 3);
  });

  it('keeps its one-time proof ids in Redis, under its own key prefix', async () => {
    const redis = openRedis(REDIS_URL);
    try {
      await redisReady(redis, 5_000);
      let found = 0;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:once:*`, 'COUNT', 1_000);
        found += keys.length;
        cursor = next;
      } while (cursor !== '0');
      assert.ok(found > 0, `no ${prefix}:once:* key: the sidecars did not use Redis`);
    } finally {
      await closeRedis(redis);
    }
  });
});
