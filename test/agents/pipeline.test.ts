import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { idempotentDocumentId } from '../../agents/orchestrator/upload.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';
import { startGatewayStandIn } from './helpers/gateway-stand-in.js';

const SAMPLES = [
  { file: 'invoice-2024-001.pdf', type: 'application/pdf', status: 'archived' },
  { file: 'transactions.csv', type: 'text/csv', status: 'archived' },
  { file: 'meeting-notes.txt', type: 'text/plain', status: 'archived' },
  { file: 'invalid-expenses.csv', type: 'text/csv', status: 'failed' },
] as const;

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64');

describe('the document id of an upload with an idempotency key', () => {
  it('is a version-8 UUID, the same for the same caller and key, another for another caller or key', () => {
    const id = idempotentDocumentId('svc-lambda', 's3:bucket/key#1');
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(idempotentDocumentId('svc-lambda', 's3:bucket/key#1'), id);
    assert.notEqual(idempotentDocumentId('svc-other', 's3:bucket/key#1'), id);
    assert.notEqual(idempotentDocumentId('svc-lambda', 's3:bucket/key#2'), id);
    // The separator cannot be forged by moving characters between caller and key.
    assert.notEqual(idempotentDocumentId('a\nb', 'c'), idempotentDocumentId('a', 'b\nc'));
  });
});

describe('the document pipeline through the MCP gateway (PostgreSQL, direct routers)', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true });
  });
  after(async () => {
    await stack.close();
  });

  const processDoc = async (id: string) => (await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda'));
  const upload = async (filename: string, contentType: string, content: string | Buffer) => {
    const answer = await stack.call('orchestrator', 'upload_document', { filename, content_type: contentType, content_base64: b64(content) }, 'lambda');
    assert.ok(answer.result, JSON.stringify(answer.error));
    return String(answer.result['document_id']);
  };

  for (const sample of SAMPLES) {
    it(`takes the sample ${sample.file} to ${sample.status}`, async () => {
      const id = await stack.uploadSample(sample.file, sample.type);
      const answer = await processDoc(id);
      assert.equal(answer.result?.['status'], sample.status, JSON.stringify(answer));
      const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
      const steps = (status.result?.['logs'] as { step: string; status: string }[]).map((l) => `${l.step}:${l.status}`);
      assert.deepEqual(steps.slice(0, 3), ['upload:succeeded', 'claim:info', 'extract:started']);
      if (sample.status === 'archived') {
        assert.deepEqual(steps.slice(3), ['extract:succeeded', 'validate:started', 'validate:succeeded', 'archive:started', 'archive:succeeded']);
        const doc = (await stack.call('archivist', 'get_document', { document_id: id }, 'viewer')).result;
        assert.equal(doc?.['archive_key'], `archive/${id}/${sample.file}`);
        const copy = await callTool(stack.gateway.url, 's3_get_object', { key: String(doc?.['archive_key']) });
        assert.equal(copy.status, 200);
        assert.equal((doc?.['validation'] as { score: number }).score, 1);
      } else {
        assert.deepEqual(steps.slice(3), ['extract:succeeded', 'validate:started', 'validate:failed']);
        assert.match(String(answer.result?.['error']), /^validation: score 0\.\d+ below 0\.80; failed: consistent_rows .*field_formats/);
        assert.ok(Number(answer.result?.['validation_score']) < 0.8);
      }
    });
  }

  it('leaves a document whose extraction fails in failed with the reason, and logs it', async () => {
    const id = await upload('broken.pdf', 'application/pdf', '%PDF-1.7\nthis is not really a PDF\n');
    const answer = await processDoc(id);
    assert.equal(answer.result?.['status'], 'failed');
    assert.match(String(answer.result?.['error']), /^extract: the PDF cannot be read/);
    const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
    const last = (status.result?.['logs'] as { step: string; status: string; message: string }[]).at(-1);
    assert.equal(last?.step, 'extract');
    assert.equal(last?.status, 'failed');
  });

  it('refuses an unsupported format and a binary "text" file with a clear reason', async () => {
    const png = await upload('photo.png', 'image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2]));
    assert.match(String((await processDoc(png)).result?.['error']), /^extract: unsupported content type 'image\/png'/);
    const binary = await upload('notes.txt', 'text/plain', Buffer.from([0xff, 0xfe, 0x00, 0x41]));
    assert.match(String((await processDoc(binary)).result?.['error']), /^extract: the file is not valid UTF-8 text/);
  });

  // A few kilobytes of header and one-cell rows asked for columns x rows keys: 50 000 columns and
  // 50 000 rows (a 350 KB upload) ran the extractor out of memory, and the sweep retook it forever.
  it('refuses a CSV of more than 1000 columns, and stores at most 20 000 cells of a wide one', async () => {
    const header = (n: number) => Array.from({ length: n }, (_, i) => `c${i}`).join(',');
    const tooWide = await upload('wide.csv', 'text/csv', `${header(1001)}\n1\n`);
    const refused = await processDoc(tooWide);
    assert.equal(refused.result?.['status'], 'failed', JSON.stringify(refused));
    assert.equal(refused.result?.['error'], 'extract: the CSV has 1001 columns; at most 1000 are read');

    const wide = await upload('wide.csv', 'text/csv', `${header(1000)}\n${'1\n'.repeat(60)}`);
    await processDoc(wide);
    const extracted = (await stack.call('archivist', 'get_document', { document_id: wide }, 'viewer')).result?.['extracted'] as Record<string, unknown>;
    assert.equal(extracted['row_count'], 60);
    assert.equal((extracted['rows'] as unknown[]).length, 20);
    assert.equal(extracted['rows_truncated'], true);
  });

  it('processes an archived document again without a second archive entry', async () => {
    const id = await stack.uploadSample('transactions.csv', 'text/csv');
    assert.equal((await processDoc(id)).result?.['status'], 'archived');
    const again = await processDoc(id);
    assert.equal(again.result?.['status'], 'archived');
    assert.equal(again.result?.['reused'], true);
    const archived = await stack.call('archivist', 'archive_document', { document_id: id }, 'orchestrator');
    assert.equal(archived.result?.['reused'], true);
    const objects = await callTool(stack.gateway.url, 's3_list_objects', { prefix: `archive/${id}/` });
    assert.equal((objects.body['objects'] as unknown[]).length, 1);
  });

  it('lets exactly one of two concurrent process_document calls run the pipeline', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    const [a, b] = await Promise.all([processDoc(id), processDoc(id)]);
    const outcomes = [a, b].map((r) => r.result?.['status'] ?? r.error?.data?.['reason']).sort();
    assert.deepEqual(outcomes, ['archived', 'conflict']);
  });

  it('finishes a document once an extractor that was down is back', async () => {
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    await stack.stopAgent('extractor');
    try {
      const failed = await processDoc(id);
      assert.equal(failed.result?.['status'], 'failed');
      assert.match(String(failed.result?.['error']), /^extract: extractor unreachable after 2 attempt\(s\) \(upstream unavailable\)/);
    } finally {
      await stack.startAgent('extractor');
    }
    const done = await processDoc(id);
    assert.equal(done.result?.['status'], 'archived', JSON.stringify(done));
  });

  /** Runs `body` with the orchestrator's extractor calls answered `result` by a stand-in. */
  const withExtractorAnswering = async (result: unknown, body: () => Promise<void>): Promise<void> => {
    const standIn = createServer((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString()));
      req.on('end', () => {
        const { id } = JSON.parse(text) as { id: string };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result }));
      });
    });
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    stack.routeTo('extractor', `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`);
    try {
      await body();
    } finally {
      stack.routeTo('extractor', undefined);
      standIn.close();
    }
  };

  it('fails a document whose extractor answers a result that is not an object, instead of leaving it processing', async () => {
    await withExtractorAnswering(null, async () => {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      const answer = await processDoc(id);
      assert.equal(answer.result?.['status'], 'failed', JSON.stringify(answer));
      assert.equal(answer.result?.['error'], 'extract: extractor answered a result that is not an object');
      assert.equal(answer.result?.['failed_step'], 'extract');
    });
  });

  // Only the validator records a rejection itself: an answer saying failed from another step was
  // taken as recorded, and the document was left processing until the stale sweep.
  it('records the failure itself when a step other than the validator answers status failed', async () => {
    await withExtractorAnswering({ status: 'failed', error: 'extractor gave up' }, async () => {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      const answer = await processDoc(id);
      assert.equal(answer.result?.['run_outcome'], 'failed', JSON.stringify(answer));
      const doc = await callTool(stack.gateway.url, 'documents_get', { document_id: id });
      assert.equal(doc.body['status'], 'failed', JSON.stringify(doc.body));
      assert.equal(doc.body['error'], 'extractor gave up');
    });
  });

  // A verdict recorded whose answer was lost (the hop cut): the retry met the document failed, got
  // conflict, and the run ended interrupted, as if another worker had taken the document over.
  it('ends a run failed when the validator\'s answer of a rejection it recorded is lost and the retry reaches it', async () => {
    const real = String(stack.agents.get('validator')?.url);
    let calls = 0;
    const standIn = createServer((req, res) => {
      void (async () => {
        let body = '';
        for await (const chunk of req) body += (chunk as Buffer).toString();
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
        const answer = await (await fetch(`${real}/message`, { method: 'POST', body, headers })).text();
        // The first answer never arrives: the validator has recorded its verdict all the same.
        if (++calls === 1) return void res.destroy();
        res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
      })();
    });
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    stack.routeTo('validator', `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`);
    try {
      const id = await stack.uploadSample('invalid-expenses.csv', 'text/csv');
      const answer = await processDoc(id);
      assert.equal(calls, 2, 'the orchestrator asked again');
      assert.equal(answer.result?.['run_outcome'], 'failed', JSON.stringify(answer));
      assert.equal(answer.result?.['status'], 'failed');
      assert.match(String(answer.result?.['error']), /^validation: score 0\.\d+ below 0\.80/);
      const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
      const steps = (status.result?.['logs'] as { step: string; status: string }[]).map((l) => `${l.step}:${l.status}`);
      assert.deepEqual(steps.slice(-2), ['validate:started', 'validate:failed']);
    } finally {
      stack.routeTo('validator', undefined);
      standIn.close();
    }
  });

  // The run archived the document, then the read for the answer failed: the caller got
  // dependency_failed, as if nothing had happened.
  it('answers the run outcome, marked final_read_failed, when the document cannot be read after an archived run', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    let orchestratorReads = 0;
    const standIn = await startGatewayStandIn(stack, (call, req, res) => {
      // Every read of the orchestrator's after its first (the one before the claim) fails, retries included.
      if (call.tool !== 'documents_get' || call.arguments['document_id'] !== id || req.headers['x-ca-a2a-client-id'] !== 'orchestrator' || ++orchestratorReads === 1) return false;
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ success: false, error: { code: 'unavailable', message: 'database unreachable' } }));
      return true;
    });
    stack.routeGatewayTo(standIn.url);
    let answer;
    try {
      answer = await processDoc(id);
    } finally {
      stack.routeGatewayTo(undefined);
      standIn.close();
    }
    assert.equal(orchestratorReads, 4, 'the final read was tried 3 times');
    const result = answer.result ?? {};
    assert.equal(result['run_outcome'], 'archived', JSON.stringify(answer));
    assert.equal(result['status'], 'archived');
    assert.equal(result['archive_key'], `archive/${id}/meeting-notes.txt`);
    assert.equal(result['validation_score'], 1);
    assert.equal(result['final_read_failed'], true);
    assert.match(String(result['final_read_error']), /database unreachable/);
    assert.equal(result['filename'], 'meeting-notes.txt');
    assert.equal((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['status'], 'archived');
  });

  // Past 200 entries check_status showed the first 200, so a long-lived document's latest runs were never seen.
  it('shows the latest 200 processing-log entries in check_status, and says when earlier ones are left out', async () => {
    const id = await upload('busy-log.txt', 'text/plain', 'Owner: ops\n');
    const status = async () => (await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer')).result ?? {};
    for (let n = 2; n <= 200; n++) assert.equal((await callTool(stack.gateway.url, 'processing_logs_append', { document_id: id, step: 'note', status: 'info', message: `entry ${n}` })).status, 200);
    const whole = await status();
    assert.equal((whole['logs'] as unknown[]).length, 200);
    assert.equal(whole['logs_truncated'], undefined);
    await callTool(stack.gateway.url, 'processing_logs_append', { document_id: id, step: 'note', status: 'info', message: 'entry 201' });
    const cut = await status();
    const logs = cut['logs'] as { message: string }[];
    assert.equal(logs.length, 200);
    // The latest 200, oldest of them first: the upload's entry is the one left out.
    assert.equal(logs[0]?.message, 'entry 2');
    assert.equal(logs.at(-1)?.message, 'entry 201');
    assert.equal(cut['logs_truncated'], true);
  });

  it('lists documents page by page, lists pending ones, gets and deletes one', async () => {
    const pending = await upload('later.txt', 'text/plain', 'Owner: ops\n');
    const listed = await stack.call('orchestrator', 'list_pending_documents', { limit: 100 }, 'document-processor');
    assert.ok(listed.result?.documents?.some((d) => d['document_id'] === pending));
    assert.ok(listed.result?.documents?.every((d) => d['status'] !== 'archived'));

    const seen = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await stack.call('archivist', 'list_documents', cursor === undefined ? { limit: 2 } : { limit: 2, cursor }, 'viewer');
      assert.ok(page.result, JSON.stringify(page.error));
      for (const doc of page.result.documents ?? []) seen.add(String(doc['document_id']));
      cursor = page.result['next_cursor'] as string | undefined;
    } while (cursor !== undefined);
    assert.ok(seen.has(pending));

    const doc = await stack.call('archivist', 'get_document', { document_id: pending }, 'viewer');
    assert.equal(doc.result?.['filename'], 'later.txt');
    const deleted = await stack.call('archivist', 'delete_document', { document_id: pending }, 'admin');
    assert.equal(deleted.result?.['deleted'], true);
    assert.deepEqual(deleted.result?.['objects_deleted'], [doc.result?.['s3_key']]);
    const gone = await stack.call('archivist', 'get_document', { document_id: pending }, 'viewer');
    assert.equal(gone.error?.data?.['reason'], 'not_found');
  });

  // The archivist read the status, then deleted: a pending document claimed in between was deleted under its run.
  it('does not delete a pending document claimed while delete_document runs: conflict, the row kept for the run', async () => {
    const id = await upload('claimed-meanwhile.txt', 'text/plain', 'Owner: ops\n');
    const standIn = await startGatewayStandIn(stack, async (call) => {
      if (call.tool === 'documents_delete' && call.arguments['document_id'] === id) {
        const claimed = await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
        assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
      }
      return false;
    });
    stack.routeGatewayTo(standIn.url);
    let answer;
    try {
      answer = await stack.call('archivist', 'delete_document', { document_id: id }, 'admin');
    } finally {
      stack.routeGatewayTo(undefined);
      standIn.close();
    }
    assert.equal(answer.error?.data?.['reason'], 'conflict', JSON.stringify(answer));
    assert.equal(answer.error?.data?.['current_status'], 'processing');
    assert.equal((answer.error?.data?.['objects_deleted'] as string[]).length, 1, 'its upload, deleted before the row');
    assert.match(String(answer.error?.message), /moved on while it was being deleted \(now processing\); it was not deleted/);
    const kept = await callTool(stack.gateway.url, 'documents_get', { document_id: id });
    assert.equal(kept.status, 200);
    assert.equal(kept.body['status'], 'processing');
  });

  it('deletes only the objects that belong to the document, whatever key another identity wrote into its row', async () => {
    const victim = await upload('victim.txt', 'text/plain', 'Owner: finance\n');
    const victimKey = String((await stack.call('archivist', 'get_document', { document_id: victim }, 'viewer')).result?.['s3_key']);
    const target = await upload('target.txt', 'text/plain', 'Owner: ops\n');
    // What a role with documents_update could once do: point the row's archive copy at another object.
    const planted = await callTool(stack.gateway.url, 'documents_update', { document_id: target, status: 'failed', archive_key: victimKey });
    assert.equal(planted.status, 200, JSON.stringify(planted.body));
    const deleted = await stack.call('archivist', 'delete_document', { document_id: target }, 'admin');
    assert.equal(deleted.result?.['deleted'], true, JSON.stringify(deleted.error));
    assert.ok(!(deleted.result?.['objects_deleted'] as string[]).includes(victimKey));
    assert.equal((await callTool(stack.gateway.url, 's3_get_object', { key: victimKey })).status, 200, 'the other document\'s upload is still there');

    // A row whose upload key is another document's archive copy.
    const archived = `archive/${victim}/victim.txt`;
    assert.equal((await callTool(stack.gateway.url, 's3_put_object', { key: archived, content_base64: Buffer.from('kept').toString('base64'), content_type: 'text/plain' })).status, 200);
    const forged = crypto.randomUUID();
    const created = await callTool(stack.gateway.url, 'documents_create', { document_id: forged, filename: 'x.txt', content_type: 'text/plain', s3_key: archived, size_bytes: 4, sha256: '0'.repeat(64) });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const removed = await stack.call('archivist', 'delete_document', { document_id: forged }, 'admin');
    assert.deepEqual(removed.result?.['objects_deleted'], []);
    assert.equal((await callTool(stack.gateway.url, 's3_get_object', { key: archived })).status, 200, 'the other document\'s archive copy is still there');
  });

  it('answers bad params, unknown methods and unknown documents with JSON-RPC errors', async () => {
    assert.equal((await stack.call('archivist', 'get_document', { document_id: 'nope' })).error?.code, -32602);
    assert.equal((await stack.call('archivist', 'list_documents', { limit: 101 })).error?.code, -32602);
    assert.equal((await stack.call('archivist', 'list_documents', { cursor: 'bogus' })).error?.code, -32602);
    assert.equal((await stack.call('orchestrator', 'list_pending_documents', { limit: 0 })).error?.code, -32602);
    assert.equal((await stack.call('archivist', 'validate_document', { document_id: crypto.randomUUID() })).error?.code, -32601);
    const missing = await stack.call('orchestrator', 'process_document', { document_id: crypto.randomUUID() });
    assert.equal(missing.error?.data?.['reason'], 'not_found');
    const bad64 = await stack.call('orchestrator', 'upload_document', { filename: 'a.txt', content_type: 'text/plain', content_base64: 'abc' });
    assert.equal(bad64.error?.code, -32602);
  });

  it('makes an upload with an idempotency key once: the same file again is the same document, another file a conflict, another caller its own', async () => {
    const send = (content: string, key: string, clientId = 'lambda') =>
      stack.call('orchestrator', 'upload_document', { filename: 'event.txt', content_type: 'text/plain', content_base64: b64(content), idempotency_key: key }, clientId);
    const key = `s3-event-${crypto.randomUUID()}`;
    const first = await send('Note: once\n', key);
    const id = String(first.result?.['document_id']);
    assert.equal(first.result?.['reused'], undefined, JSON.stringify(first));
    const again = await send('Note: once\n', key);
    assert.deepEqual(again.result, { ...first.result, reused: true });
    const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
    const uploads = (status.result?.['logs'] as { step: string }[]).filter((entry) => entry.step === 'upload');
    assert.equal(uploads.length, 1, 'stored and logged once');
    const other = await send('Note: another file\n', key);
    assert.equal(other.error?.data?.['reason'], 'conflict', JSON.stringify(other));
    assert.equal(other.error?.data?.['document_id'], id);
    const elsewhere = await send('Note: once\n', key, 'admin');
    assert.notEqual(elsewhere.result?.['document_id'], id, 'another caller\'s key names another document');
    // Two sends racing: one stores, the other answers the same document.
    const raced = `s3-event-${crypto.randomUUID()}`;
    const both = await Promise.all([send('Note: raced\n', raced), send('Note: raced\n', raced)]);
    assert.equal(both[0].result?.['document_id'], both[1].result?.['document_id'], JSON.stringify(both));
    // Without a key, the same file twice is two documents, as before.
    assert.notEqual(await upload('twice.txt', 'text/plain', 'x'), await upload('twice.txt', 'text/plain', 'x'));
  });

  it('keeps the idempotency keys of two subjects apart however long they are, alike in their first 300 characters', async () => {
    const prefix = `https://idp.example/${'tenant/'.repeat(40)}`;
    const key = `s3-event-${crypto.randomUUID()}`;
    // As the sidecar passes the verified subject on: whole.
    const send = async (subject: string, content: string) => {
      const res = await fetch(`${String(stack.agents.get('orchestrator')?.url)}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ca-a2a-subject': subject, 'x-ca-a2a-client-id': 'lambda', 'x-ca-a2a-roles': 'lambda' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'upload_document', params: { filename: 'event.txt', content_type: 'text/plain', content_base64: b64(content), idempotency_key: key } }),
      });
      return (await res.json()) as { result?: Record<string, unknown>; error?: unknown };
    };
    const alice = await send(`${prefix}alice`, 'Note: alice\n');
    const bob = await send(`${prefix}bob`, 'Note: bob\n');
    assert.ok(alice.result !== undefined && bob.result !== undefined, JSON.stringify([alice, bob]));
    assert.notEqual(bob.result['document_id'], alice.result['document_id'], 'another subject\'s key names another document');
    assert.equal(bob.result['reused'], undefined);
  });

  it('refuses to extract a document nobody claimed', async () => {
    const id = await upload('unclaimed.txt', 'text/plain', 'Note: hello\n');
    const answer = await stack.call('extractor', 'extract_document', { document_id: id }, 'orchestrator');
    assert.equal(answer.error?.data?.['reason'], 'conflict');
    assert.equal(answer.error?.data?.['current_status'], 'pending');
  });
});
