import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { MAX_JSON_DEPTH } from '../../mcp/tools/document-tools.js';
import { callTool, captureLogger, createTestSchema, tempDir } from './helpers.js';

const sha = 'a'.repeat(64);
type Doc = { document_id: string; status: string; claimed_at: string | null; claim_count: number; [k: string]: unknown };

// The document tools must behave the same on PostgreSQL and on the embedded PGlite.
const modes = [
  { name: 'PostgreSQL', embedded: false },
  { name: 'embedded PGlite', embedded: true },
];

for (const mode of modes) {
  describe(`document and processing-log tools on ${mode.name}`, () => {
    let gw: McpGateway;
    const cleanups: (() => Promise<void>)[] = [];
    let databaseUrl: string | undefined;
    const log = captureLogger();
    let n = 0;
    const create = async (extra: Record<string, unknown> = {}) => {
      const r = await callTool(gw.url, 'documents_create', {
        filename: 'invoice.pdf', content_type: 'application/pdf', s3_key: `uploads/doc-${n++}-${randomUUID()}.pdf`, size_bytes: 10, sha256: sha, ...extra,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body as unknown as Doc;
    };

    before(async () => {
      const dataDir = await tempDir();
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      if (!mode.embedded) {
        const schema = await createTestSchema();
        cleanups.push(() => schema.drop());
        databaseUrl = schema.urlFor();
      }
      gw = await startMcpGateway({ port: 0, dataDir, databaseUrl, logger: log.logger });
      cleanups.unshift(() => gw.close());
    });
    after(async () => {
      for (const c of cleanups) await c();
    });

    it('creates a pending document and reads it back', async () => {
      const doc = await create();
      assert.equal(doc.status, 'pending');
      assert.match(doc.document_id, /^[0-9a-f-]{36}$/);
      assert.equal(doc.size_bytes, 10);
      const got = await callTool(gw.url, 'documents_get', { document_id: doc.document_id });
      assert.equal(got.status, 200);
      assert.equal(got.body.document_id, doc.document_id);
      assert.equal(got.body.filename, 'invoice.pdf');
    });

    it('refuses a second document for the same s3_key or id with conflict', async () => {
      const doc = await create();
      const sameKey = await callTool(gw.url, 'documents_create', { filename: 'b.pdf', content_type: 'application/pdf', s3_key: doc.s3_key, size_bytes: 1, sha256: sha });
      assert.equal(sameKey.status, 409);
      assert.equal(sameKey.body.error?.code, 'conflict');
      const sameId = await callTool(gw.url, 'documents_create', { document_id: doc.document_id, filename: 'b.pdf', content_type: 'application/pdf', s3_key: 'uploads/other.pdf', size_bytes: 1, sha256: sha });
      assert.equal(sameId.body.error?.code, 'conflict');
    });

    it('refuses invalid arguments: non-UUID id, bad sha256, s3_key outside the prefixes', async () => {
      const cases: [string, unknown, string][] = [
        ['documents_get', { document_id: 'not-a-uuid' }, 'invalid_arguments'],
        ['documents_get', { document_id: 'urn:uuid:123e4567-e89b-12d3-a456-426614174000' }, 'invalid_arguments'],
        ['documents_create', { filename: 'a', content_type: 'text/plain', s3_key: 'uploads/a', size_bytes: 1, sha256: 'xyz' }, 'invalid_arguments'],
        ['documents_create', { filename: 'a', content_type: 'text/plain', s3_key: '../etc/passwd', size_bytes: 1, sha256: sha }, 'invalid_key'],
        ['documents_list', { limit: 101 }, 'invalid_arguments'],
        ['documents_list', { cursor: 'garbage' }, 'invalid_arguments'],
        ['documents_update', { document_id: randomUUID() }, 'invalid_arguments'],
        ['documents_update', { document_id: randomUUID(), status: 'done' }, 'invalid_arguments'],
      ];
      for (const [tool, args, code] of cases) {
        const r = await callTool(gw.url, tool, args);
        assert.equal(r.status, 400, `${tool} ${JSON.stringify(args)}`);
        assert.equal(r.body.error?.code, code);
      }
    });

    /** JSON text of `{"a": … 1 …}`, objects nested `depth` deep: JSON.stringify cannot write it past a few thousand. */
    const nestedJson = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    /** POST /call_tool with `argsJson` as the arguments' JSON text, sent as is. */
    const callWithJson = async (tool: string, argsJson: string) => {
      const res = await fetch(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"tool":"${tool}","arguments":${argsJson}}` });
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string; errors?: { path: string }[] }; extracted?: unknown; size_bytes?: number } };
    };

    it('refuses a size_bytes past 2^53 - 1 by its schema, rather than store a number other than the one sent', async () => {
      const args = (size: string) => `{"filename":"a.pdf","content_type":"application/pdf","s3_key":"uploads/${randomUUID()}","size_bytes":${size},"sha256":"${sha}"}`;
      // 9007199254740993 parses as 9007199254740992, which PostgreSQL's bigint would have taken.
      for (const size of ['9007199254740993', '9223372036854775807', '1e30']) {
        const r = await callWithJson('documents_create', args(size));
        assert.equal(r.status, 400, `${size}: ${JSON.stringify(r.body)}`);
        assert.ok(r.body.error?.errors?.some((e) => e.path === '/size_bytes'), `${size}: ${JSON.stringify(r.body)}`);
      }
      const largest = await callWithJson('documents_create', args(String(Number.MAX_SAFE_INTEGER)));
      assert.equal(largest.status, 200, JSON.stringify(largest.body));
      assert.equal(largest.body.size_bytes, Number.MAX_SAFE_INTEGER);
    });

    it('refuses a cursor that is not a timestamp and a uuid with 400 invalid_arguments', async () => {
      const cursor = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const zero = '00000000-0000-0000-0000-000000000000';
      for (const v of [['garbage', zero], ['2024-13-45', zero], ['2024-01-01 00:00:00+00', 'x']]) {
        const r = await callTool(gw.url, 'documents_list', { cursor: cursor(v) });
        assert.equal(r.status, 400, `${JSON.stringify(v)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error?.code, 'invalid_arguments');
        assert.match(String(r.body.error?.message), /cursor/, 'refused before the query');
      }
      // The right shape, but a day February lacks: PostgreSQL refuses it (a data exception, class 22).
      const feb30 = await callTool(gw.url, 'documents_list', { cursor: cursor(['2024-02-30 00:00:00+00', zero]) });
      assert.equal(feb30.status, 400, JSON.stringify(feb30.body));
      assert.equal(feb30.body.error?.code, 'invalid_arguments');
    });

    /** Each call is refused 400 by the tool's schema, naming the argument's path. */
    const assertSchemaRefusals = async (refusals: [string, Record<string, unknown>, string][]): Promise<void> => {
      for (const [tool, args, path] of refusals) {
        const r = await callTool(gw.url, tool, args);
        assert.equal(r.status, 400, `${tool}: ${JSON.stringify(r.body)}`);
        assert.ok((r.body.error as { errors?: { path: string }[] }).errors?.some((e) => e.path === path), JSON.stringify(r.body));
      }
    };
    /** Each documents_update of a jsonb column is refused 400 invalid_arguments with a message matching `why`. */
    const assertJsonRefusals = async (id: string, updates: Record<string, unknown>[], why: RegExp): Promise<void> => {
      for (const args of updates) {
        const r = await callTool(gw.url, 'documents_update', { document_id: id, ...args });
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.error?.code, 'invalid_arguments');
        assert.match(String(r.body.error?.message), why);
      }
    };

    it('refuses U+0000 in free text and JSON, which PostgreSQL cannot store, naming the argument', async () => {
      const doc = await create();
      const schemaRefusals: [string, Record<string, unknown>, string][] = [
        ['documents_create', { filename: 'a.pdf', content_type: 'app\u0000x', s3_key: `uploads/${randomUUID()}`, size_bytes: 1, sha256: sha }, '/content_type'],
        ['documents_update', { document_id: doc.document_id, error: 'a\u0000b' }, '/error'],
        ['processing_logs_append', { document_id: doc.document_id, step: 'extract', status: 'info', message: 'a\u0000b' }, '/message'],
      ];
      await assertSchemaRefusals(schemaRefusals);
      await assertJsonRefusals(doc.document_id, [{ extracted: { text: 'a\u0000b' } }, { validation: { score: 1, failures: [{ ['k\u0000']: 1 }] } }], /U\+0000/);
      const escaped = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, extracted: { text: 'a\\u0000b' } });
      assert.deepEqual(escaped.body.extracted, { text: 'a\\u0000b' }, 'a backslash before u0000 is only text');
    });

    it('refuses a lone UTF-16 surrogate in free text and JSON, which the database would store as U+FFFD or refuse, and keeps an emoji', async () => {
      const doc = await create();
      const schemaRefusals: [string, Record<string, unknown>, string][] = [
        ['documents_create', { filename: 'a\ud800.pdf', content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}`, size_bytes: 1, sha256: sha }, '/filename'],
        ['documents_create', { filename: 'a.pdf', content_type: 'app\udc00x', s3_key: `uploads/${randomUUID()}`, size_bytes: 1, sha256: sha }, '/content_type'],
        ['documents_update', { document_id: doc.document_id, error: 'cut \ud83d' }, '/error'],
        ['processing_logs_append', { document_id: doc.document_id, step: 'extract', status: 'info', message: '\udfff' }, '/message'],
      ];
      await assertSchemaRefusals(schemaRefusals);
      await assertJsonRefusals(doc.document_id, [{ extracted: { text: 'a\ud800b' } }, { validation: { score: 1, failures: [{ ['k\udbff']: 1 }] } }], /lone UTF-16 surrogate/);
      const unchanged = await callTool(gw.url, 'documents_get', { document_id: doc.document_id });
      assert.equal(unchanged.body.error, null, 'nothing was written');
      const kept = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, error: 'r\u00e9sum\u00e9 \u{1F600}', extracted: { text: '\u{1F600} \\ud800' } });
      assert.equal(kept.status, 200, JSON.stringify(kept.body));
      assert.equal(kept.body.error, 'r\u00e9sum\u00e9 \u{1F600}');
      assert.deepEqual(kept.body.extracted, { text: '\u{1F600} \\ud800' }, 'a pair is stored; a backslash before ud800 is only text');
    });

    it(`stores extracted and validation nested up to ${MAX_JSON_DEPTH} levels, and refuses deeper as invalid_arguments, writing nothing`, async () => {
      const doc = await create();
      const deepest = await callWithJson('documents_update', `{"document_id":"${doc.document_id}","extracted":${nestedJson(MAX_JSON_DEPTH)}}`);
      assert.equal(deepest.status, 200, JSON.stringify(deepest.body));
      assert.deepEqual(deepest.body.extracted, JSON.parse(nestedJson(MAX_JSON_DEPTH)));
      // 10 000 levels: past what JSON.stringify can walk, once a 500 internal error.
      for (const depth of [MAX_JSON_DEPTH + 1, 10_000]) {
        const r = await callWithJson('documents_update', `{"document_id":"${doc.document_id}","status":"failed","extracted":${nestedJson(depth)}}`);
        assert.equal(r.status, 400, `${depth}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.error?.code, 'invalid_arguments');
        assert.match(String(r.body.error?.message), new RegExp(`extracted nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`));
      }
      const validation = await callWithJson('documents_update', `{"document_id":"${doc.document_id}","validation":{"score":1,"failures":[${nestedJson(MAX_JSON_DEPTH)}]}}`);
      assert.equal(validation.status, 400, JSON.stringify(validation.body));
      assert.match(String(validation.body.error?.message), /^validation nests/);
      const unchanged = await callTool(gw.url, 'documents_get', { document_id: doc.document_id });
      assert.equal(unchanged.body.status, 'pending', 'nothing was written');
      assert.deepEqual(unchanged.body.extracted, JSON.parse(nestedJson(MAX_JSON_DEPTH)));
    });

    // A row written around the gateway (PostgreSQL's jsonb takes about 10 000 levels) that
    // JSON.stringify cannot write: /call_tool left the request without an answer.
    if (!mode.embedded) it('answers a document nested too deep to write as JSON with 500 internal on /call_tool and over MCP, audited, never a request left open', { timeout: 60_000 }, async () => {
      const doc = await create();
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        await client.query('UPDATE documents SET extracted = $1::jsonb WHERE document_id = $2', [nestedJson(9_000), doc.document_id]);
      } finally {
        await client.end();
      }
      const rest = await callTool(gw.url, 'documents_get', { document_id: doc.document_id }, { 'x-ca-a2a-request-id': 'req-deep-rest' });
      assert.equal(rest.status, 500);
      assert.deepEqual(rest.body.error, { code: 'internal', message: 'internal error' });
      const res = await fetch(`${gw.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-ca-a2a-request-id': 'req-deep-mcp' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'documents_get', arguments: { document_id: doc.document_id } } }),
      });
      const answer = (await res.json()) as { result?: { isError?: boolean; structuredContent?: { error?: unknown } } };
      assert.equal(answer.result?.isError, true, JSON.stringify(answer));
      assert.deepEqual(answer.result?.structuredContent?.error, { code: 'internal', message: 'internal error' });
      for (const request_id of ['req-deep-rest', 'req-deep-mcp']) {
        const line = log.lines.find((l) => l.event_type === 'mcp_tool_result_refused' && l.request_id === request_id);
        assert.equal(line?.outcome, 'internal', request_id);
      }
    });

    // Docs: filename "refuses every control character"; C1 (U+0080..U+009F) and the bidi controls
    // refused in keys (Trojan Source) were stored.
    it('refuses a filename with a C1 or bidirectional control, as keys, and keeps right-to-left letters', async () => {
      const named = (filename: string): [string, Record<string, unknown>, string] =>
        ['documents_create', { filename, content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}`, size_bytes: 1, sha256: sha }, '/filename'];
      await assertSchemaRefusals(['a\u0085b.pdf', 'a\u009b31m.pdf', 'invoice\u202efdp.exe', 'a\u200fb.pdf', 'a\u2066b.pdf', 'a\u061cb.pdf'].map(named));
      for (const filename of ['\u0641\u0627\u062a\u0648\u0631\u0629.pdf', '\u05d7\u05e9\u05d1\u05d5\u05e0\u05d9\u05ea.pdf', 'caf\u00e9\u00a0\u{1F600}.pdf']) {
        const doc = await create({ filename });
        assert.equal(doc.filename, filename);
      }
    });

    it('reports not_found for a document that does not exist', async () => {
      const id = randomUUID();
      for (const [tool, args] of [
        ['documents_get', { document_id: id }],
        ['documents_delete', { document_id: id }],
        ['documents_update', { document_id: id, status: 'failed' }],
        ['documents_claim', { document_id: id }],
        ['processing_logs_append', { document_id: id, step: 'extract', status: 'started' }],
        ['processing_logs_list', { document_id: id }],
      ] as const) {
        const r = await callTool(gw.url, tool, args);
        assert.equal(r.status, 404, tool);
        assert.equal(r.body.error?.code, 'not_found');
      }
    });

    it('pages through documents in a stable order with a cursor, filtered by status', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create({ filename: `page-${i}.pdf` })).document_id);
      await callTool(gw.url, 'documents_update', { document_id: ids[4], status: 'failed', error: 'x' });
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const r = await callTool(gw.url, 'documents_list', { status: 'pending', limit: 2, ...(cursor ? { cursor } : {}) });
        assert.equal(r.status, 200);
        const docs = r.body.documents as Doc[];
        assert.ok(docs.length <= 2);
        assert.ok(docs.every((d) => d.status === 'pending'));
        assert.ok(docs.every((d) => !Object.hasOwn(d, 'extracted')), 'a listing leaves the extraction out');
        seen.push(...docs.map((d) => d.document_id));
        cursor = r.body.next_cursor as string | undefined;
      } while (cursor);
      assert.equal(new Set(seen).size, seen.length, 'no document twice');
      const mine = seen.filter((id) => ids.includes(id));
      assert.deepEqual(mine, ids.slice(0, 4), 'creation order, the failed one excluded');
    });

    it('lets exactly one of two concurrent workers claim a document', async () => {
      const doc = await create();
      const [a, b] = await Promise.all([
        callTool(gw.url, 'documents_claim', { document_id: doc.document_id }),
        callTool(gw.url, 'documents_claim', { document_id: doc.document_id }),
      ]);
      const statuses = [a.status, b.status].sort();
      assert.deepEqual(statuses, [200, 409]);
      const loser = a.status === 409 ? a : b;
      assert.equal(loser.body.error?.code, 'conflict');
      assert.equal(loser.body.error?.current_status, 'processing');
      const winner = (a.status === 200 ? a : b).body as unknown as Doc;
      assert.equal(winner.status, 'processing');
      assert.ok(winner.claimed_at);
      assert.equal(winner.claim_count, 1);
    });

    it('re-takes a stale claim, by claim with stale_after_seconds and by the sweep', async () => {
      const doc = await create();
      await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      const fresh = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id, stale_after_seconds: 3600 });
      assert.equal(fresh.body.error?.code, 'conflict', 'a recent claim is not stale');
      const retaken = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id, stale_after_seconds: 0 });
      assert.equal(retaken.status, 200);
      assert.equal(retaken.body.claim_count, 2);
      const swept = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 0, limit: 100 });
      assert.equal(swept.status, 200);
      const mine = (swept.body.documents as Doc[]).find((d) => d.document_id === doc.document_id);
      assert.equal(mine?.claim_count, 3);
      const none = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 3600 });
      assert.ok(!(none.body.documents as Doc[]).some((d) => d.document_id === doc.document_id));
    });

    it('sweeps a run stalled between steps back to processing with a fresh claim, and leaves a live one', async () => {
      const doc = await create();
      await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'processing', status: 'validated', validation: { score: 1 } });
      const live = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 3600, limit: 100 });
      assert.ok(!(live.body.documents as Doc[]).some((d) => d.document_id === doc.document_id), 'changed a moment ago: live');
      const swept = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 0, limit: 100 });
      const mine = (swept.body.documents as Doc[]).find((d) => d.document_id === doc.document_id);
      assert.equal(mine?.status, 'processing');
      assert.equal(mine?.claim_count, 2);
      assert.ok(Date.parse(String(mine?.claimed_at)) > Date.parse(String(doc.created_at)));
    });

    it('re-takes a run stalled between steps (extracted, validated) by claim with stale_after_seconds, by its last change, and leaves a live one', async () => {
      for (const [status, result] of [['extracted', { extracted: { text: 'x' } }], ['validated', { validation: { score: 1 } }]] as const) {
        const doc = await create();
        await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
        const moved = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'processing', status, ...result });
        assert.equal(moved.status, 200, JSON.stringify(moved.body));
        const live = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id, stale_after_seconds: 3600 });
        assert.equal(live.status, 409, `${status}: changed a moment ago, live`);
        assert.equal(live.body.error?.code, 'conflict');
        assert.equal(live.body.error?.current_status, status);
        assert.match(String(live.body.error?.message), new RegExp(`is ${status}, expected pending\\|failed or stalled for 3600 s`));
        const retaken = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id, stale_after_seconds: 0 });
        assert.equal(retaken.status, 200, `${status}: ${JSON.stringify(retaken.body)}`);
        assert.deepEqual([retaken.body.status, retaken.body.claim_count], ['processing', 2]);
      }
    });

    // A run stalled between steps holds its extraction; a sweep of 100 carried them all at once.
    it('answers the sweep with each document as documents_list does, without extracted, which documents_get still has', async () => {
      const doc = await create();
      await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'processing', status: 'extracted', extracted: { text: 'x'.repeat(1000) } });
      const swept = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 0, limit: 100 });
      assert.equal(swept.status, 200, JSON.stringify(swept.body));
      const mine = (swept.body.documents as Doc[]).find((d) => d.document_id === doc.document_id);
      assert.deepEqual([mine?.status, mine?.claim_count, mine?.s3_key], ['processing', 2, doc.s3_key]);
      assert.ok(mine && !('extracted' in mine), JSON.stringify(mine));
      const got = await callTool(gw.url, 'documents_get', { document_id: doc.document_id });
      assert.deepEqual(got.body.extracted, { text: 'x'.repeat(1000) });
    });

    it('claims an archived document neither outright nor as stale', async () => {
      const doc = await create();
      await callTool(gw.url, 'documents_update', { document_id: doc.document_id, status: 'archived' });
      for (const args of [{}, { stale_after_seconds: 0 }]) {
        const r = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id, ...args });
        assert.equal(r.body.error?.code, 'conflict', JSON.stringify(args));
        assert.equal(r.body.error?.current_status, 'archived');
      }
    });

    // The statement's subquery was run again for each row it matched, and SKIP LOCKED then skipped
    // the row just claimed and picked the next: limit 1 claimed every stalled document.
    it('re-claims no more than limit documents, and leaves the others as they were', async () => {
      const docs = [await create(), await create(), await create()];
      for (const doc of docs) await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      const swept = await callTool(gw.url, 'documents_claim_stale', { older_than_seconds: 0, limit: 1 });
      assert.equal(swept.status, 200);
      assert.equal((swept.body.documents as Doc[]).length, 1, JSON.stringify(swept.body));
      const counts = await Promise.all(docs.map(async (doc) => (await callTool(gw.url, 'documents_get', { document_id: doc.document_id })).body['claim_count']));
      assert.ok(counts.filter((count) => count === 2).length <= 1, `claims: ${counts.join()}`);
    });

    it('runs the pipeline: claim, extract, validate, archive idempotently, with a log per step', async () => {
      const doc = await create();
      const id = doc.document_id;
      const log = (step: string, status: string, message?: string) =>
        callTool(gw.url, 'processing_logs_append', { document_id: id, step, status, ...(message ? { message } : {}) });
      assert.equal((await log('upload', 'succeeded')).status, 200);
      const claimed = await callTool(gw.url, 'documents_update', { document_id: id, expected_status: ['pending', 'failed'], status: 'processing' });
      assert.equal(claimed.body.status, 'processing');
      const extracted = await callTool(gw.url, 'documents_update', { document_id: id, expected_status: 'processing', status: 'extracted', extracted: { text: 'hello', fields: { total: 12.5 } } });
      assert.deepEqual(extracted.body.extracted, { text: 'hello', fields: { total: 12.5 } });
      const validated = await callTool(gw.url, 'documents_update', { document_id: id, expected_status: 'extracted', status: 'validated', validation: { score: 0.9, failures: [] } });
      assert.deepEqual(validated.body.validation, { score: 0.9, failures: [] });
      const archive = { document_id: id, expected_status: ['validated', 'archived'], status: 'archived', archive_key: `archive/${id}/invoice.pdf` };
      const first = await callTool(gw.url, 'documents_update', archive);
      const second = await callTool(gw.url, 'documents_update', archive);
      assert.equal(first.body.status, 'archived');
      assert.equal(second.body.archive_key, `archive/${id}/invoice.pdf`);
      const wrong = await callTool(gw.url, 'documents_update', { document_id: id, expected_status: 'pending', status: 'processing' });
      assert.equal(wrong.status, 409);
      assert.equal(wrong.body.error?.current_status, 'archived');
      await log('archive', 'succeeded', 'archived once');
      const logs = await callTool(gw.url, 'processing_logs_list', { document_id: id });
      assert.deepEqual((logs.body.entries as { step: string; status: string }[]).map((e) => `${e.step}:${e.status}`), ['upload:succeeded', 'archive:succeeded']);
    });

    it('records a failure with its reason and lets the document be claimed again', async () => {
      const doc = await create();
      await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      const failed = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'processing', status: 'failed', error: 'extractor: unreadable PDF' });
      assert.equal(failed.body.status, 'failed');
      assert.equal(failed.body.error, 'extractor: unreadable PDF');
      const again = await callTool(gw.url, 'documents_claim', { document_id: doc.document_id });
      assert.equal(again.status, 200);
    });

    it('applies an update with expected_claim_count only while that claim is the current one, and refuses a superseded one with claim_superseded, changing nothing', async () => {
      const doc = await create();
      const first = (await callTool(gw.url, 'documents_claim', { document_id: doc.document_id })).body as unknown as Doc;
      assert.equal(first.claim_count, 1);
      const held = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_claim_count: 1, status: 'extracted', extracted: { text: 'run 1' } });
      assert.equal(held.status, 200, JSON.stringify(held.body));
      assert.equal(held.body.status, 'extracted');

      // The run stalls; another worker takes the document over (a second claim).
      const taken = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'extracted', status: 'processing' });
      assert.equal(taken.body.claim_count, 2);
      const before = (await callTool(gw.url, 'documents_get', { document_id: doc.document_id })).body;

      const stale = await callTool(gw.url, 'documents_update', {
        document_id: doc.document_id, expected_status: ['processing', 'extracted', 'validated'], expected_claim_count: 1, status: 'failed', error: 'run 1 failed',
      });
      assert.equal(stale.status, 409, JSON.stringify(stale.body));
      assert.deepEqual(stale.body.error, {
        code: 'claim_superseded',
        message: `document ${doc.document_id} was claimed again (claim 2, expected 1)`,
        current_status: 'processing',
        current_claim_count: 2,
      });
      const after = (await callTool(gw.url, 'documents_get', { document_id: doc.document_id })).body;
      assert.deepEqual(after, before, 'the row is unchanged, updated_at included');

      // A claim count ahead of the row's is not the current claim either.
      assert.equal((await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_claim_count: 3, error: 'x' })).body.error?.code, 'claim_superseded');
      // The current claim still writes; a status mismatch under it stays a plain conflict.
      const current = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_claim_count: 2, status: 'failed', error: 'run 2 failed' });
      assert.equal(current.body.status, 'failed');
      const wrongStatus = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_status: 'processing', expected_claim_count: 2, error: null });
      assert.equal(wrongStatus.body.error?.code, 'conflict');
      assert.equal(wrongStatus.body.error?.current_status, 'failed');
      assert.equal((await callTool(gw.url, 'documents_update', { document_id: randomUUID(), expected_claim_count: 0, error: null })).body.error?.code, 'not_found');
      for (const count of [-1, 1.5, '1', 2147483648]) {
        const bad = await callTool(gw.url, 'documents_update', { document_id: doc.document_id, expected_claim_count: count, error: null });
        assert.equal(bad.body.error?.code, 'invalid_arguments', JSON.stringify(count));
      }
    });

    it('lists a processing log oldest first by default, newest first with order newest_first, and refuses another order', async () => {
      const doc = await create();
      for (const message of ['one', 'two', 'three']) await callTool(gw.url, 'processing_logs_append', { document_id: doc.document_id, step: 'note', status: 'info', message });
      const messages = async (args: Record<string, unknown>) =>
        ((await callTool(gw.url, 'processing_logs_list', { document_id: doc.document_id, ...args })).body.entries as { message: string }[]).map((e) => e.message);
      assert.deepEqual(await messages({ limit: 2 }), ['one', 'two']);
      assert.deepEqual(await messages({ limit: 2, order: 'oldest_first' }), ['one', 'two']);
      assert.deepEqual(await messages({ limit: 2, order: 'newest_first' }), ['three', 'two']);
      for (const order of ['desc', 'NEWEST_FIRST', 1]) {
        const bad = await callTool(gw.url, 'processing_logs_list', { document_id: doc.document_id, order });
        assert.equal(bad.status, 400, JSON.stringify(order));
        assert.equal(bad.body.error?.code, 'invalid_arguments');
      }
    });

    it('deletes a document only while it has the expected status and claim, and refuses with conflict or claim_superseded otherwise, deleting nothing', async () => {
      const doc = await create();
      const id = doc.document_id;
      const wrongStatus = await callTool(gw.url, 'documents_delete', { document_id: id, expected_status: ['archived', 'failed'] });
      assert.equal(wrongStatus.status, 409, JSON.stringify(wrongStatus.body));
      assert.deepEqual(wrongStatus.body.error, { code: 'conflict', message: `document ${id} is pending, expected archived|failed`, current_status: 'pending' });
      // Claimed since the caller read it (claim_count 0).
      assert.equal((await callTool(gw.url, 'documents_claim', { document_id: id })).status, 200);
      const claimed = await callTool(gw.url, 'documents_delete', { document_id: id, expected_status: 'pending', expected_claim_count: 0 });
      assert.equal(claimed.status, 409, JSON.stringify(claimed.body));
      assert.equal(claimed.body.error?.code, 'claim_superseded');
      assert.equal(claimed.body.error?.current_status, 'processing');
      assert.equal((await callTool(gw.url, 'documents_get', { document_id: id })).status, 200, 'nothing was deleted');
      for (const bad of [{ expected_status: 'gone' }, { expected_status: [] }, { expected_claim_count: -1 }, { expected_claim_count: '1' }]) {
        const refused = await callTool(gw.url, 'documents_delete', { document_id: id, ...bad });
        assert.equal(refused.body.error?.code, 'invalid_arguments', JSON.stringify(bad));
      }
      const done = await callTool(gw.url, 'documents_delete', { document_id: id, expected_status: ['processing'], expected_claim_count: 1 });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.deepEqual(done.body, { success: true, document_id: id, deleted: true });
      const again = await callTool(gw.url, 'documents_delete', { document_id: id, expected_status: 'processing' });
      assert.equal(again.body.error?.code, 'not_found');
    });

    it('deletes a document together with its processing logs', async () => {
      const doc = await create();
      await callTool(gw.url, 'processing_logs_append', { document_id: doc.document_id, step: 'extract', status: 'started' });
      const del = await callTool(gw.url, 'documents_delete', { document_id: doc.document_id });
      assert.equal(del.status, 200);
      assert.equal(del.body.deleted, true);
      assert.equal((await callTool(gw.url, 'documents_get', { document_id: doc.document_id })).status, 404);
      assert.equal((await callTool(gw.url, 'processing_logs_list', { document_id: doc.document_id })).status, 404);
    });
  });
}
