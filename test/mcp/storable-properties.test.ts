import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { STORABLE_TEXT } from '../../mcp/tools/document-rows.js';
import { anyText, createStoreTable, storeEach } from '../helpers/storable-strings.js';
import { callTool, captureLogger, createTestSchema, tempDir } from './helpers.js';

// eslint-disable-next-line no-control-regex -- U+0000 is one of the two things PostgreSQL refuses
const NOT_STORABLE = /\u0000|\p{Cs}/u;

/** Every string in a JSON value, keys included. */
const stringsIn = (value: unknown): string[] => {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => [k, ...stringsIn(v)]);
  return [];
};

describe('free-text and jsonb arguments against PostgreSQL (property-based)', () => {
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let client: pg.Client;
  let gw: McpGateway;
  let dataDir: string;
  before(async () => {
    schema = await createTestSchema();
    client = new pg.Client({ connectionString: schema.urlFor() });
    await client.connect();
    await createStoreTable(client, 'stored');
    dataDir = await tempDir();
    gw = await startMcpGateway({ port: 0, dataDir, databaseUrl: schema.urlFor(), logger: captureLogger().logger });
  });
  after(async () => {
    await gw?.close();
    await client?.end();
    await schema?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('STORABLE_TEXT, compiled as ajv does (flag u), accepts exactly what a text column stores unchanged', async () => {
    const accepts = new Ajv({ strict: true }).compile({ type: 'string', pattern: STORABLE_TEXT });
    await fc.assert(fc.asyncProperty(fc.array(anyText(), { minLength: 1, maxLength: 100 }), async (batch) => {
      const stored = await storeEach(client, 'stored', 't', batch);
      batch.forEach((s, i) => {
        const unchanged = stored[i]?.ok === true && stored[i].value === s;
        assert.equal(accepts(s), unchanged, `${JSON.stringify(s)}: ${JSON.stringify(stored[i])}`);
      });
    }), { numRuns: 50 });
  });

  it('documents_update stores any extracted object it accepts as sent, and refuses only what jsonb cannot hold', async () => {
    const created = await callTool(gw.url, 'documents_create', { filename: 'p.txt', content_type: 'text/plain', s3_key: 'uploads/properties.txt', size_bytes: 1, sha256: 'a'.repeat(64) });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body['document_id'];
    const key = anyText(12);
    const text = anyText(30);
    const dictionary = <T>(values: fc.Arbitrary<T>) => fc.dictionary(key, values, { maxKeys: 4, noNullPrototype: true });
    const extracted = dictionary(fc.oneof(text, fc.array(text, { maxLength: 3 }), dictionary(text)));
    await fc.assert(fc.asyncProperty(extracted, async (value) => {
      const sent = JSON.stringify(value);
      const r = await callTool(gw.url, 'documents_update', { document_id: id, extracted: value });
      const storable = !stringsIn(value).some((s) => NOT_STORABLE.test(s));
      if (!storable) {
        assert.equal(r.status, 400, `${sent}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error?.code, 'invalid_arguments', sent);
        return;
      }
      assert.equal(r.status, 200, `${sent}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(r.body['extracted'], value, sent);
      const got = await callTool(gw.url, 'documents_get', { document_id: id });
      assert.deepEqual(got.body['extracted'], value, sent);
    }), { numRuns: 60 });
  });
});
