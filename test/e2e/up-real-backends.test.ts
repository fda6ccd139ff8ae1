import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { UpResult } from '../../proxy/up/up.js';
import { createTestSchema, PG_URL, startS3rver } from '../mcp/helpers.js';
import { startUp, tempDataDir } from './helpers.js';

const REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

describe('ca-a2a up on Redis, PostgreSQL and an S3 endpoint', () => {
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
});
