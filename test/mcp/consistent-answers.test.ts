import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setImmediate } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { callTool, metricValue, startTestGateway, waitingOnLock, type ToolResponse } from './helpers.js';

/**
 * A tool's answer is read from the database in the one statement that decides it: a call of
 * another worker that changes the row between two statements of the same call cannot make the
 * answer contradict itself. Each test orders the calls by a caller bound of 1: the other call
 * waits for the caller's slot and takes it as soon as the first statement of the call under
 * test gives it back, before a second statement of that call could.
 */
describe('answers read in the statement that decides them', () => {
  const applicationName = `ca-a2a-consistent-${randomBytes(4).toString('hex')}`;
  const worker = { 'x-ca-a2a-client-id': 'worker' };
  let started: Awaited<ReturnType<typeof startTestGateway>>;
  let db: pg.Client;

  before(async () => {
    started = await startTestGateway({ pool: { applicationName }, perCaller: { maxStatements: 1, maxWaitMs: 600_000 } });
    db = new pg.Client({ connectionString: started.databaseUrl });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await started.close();
  });

  const call = (tool: string, args: unknown): Promise<ToolResponse> => callTool(started.gateway.url, tool, args, worker);
  const waiting = (n: number) => async () => {
    while ((await metricValue(started.gateway.url, 'ca_a2a_mcp_caller_waiting', { backend: 'postgres' })) < n) await setImmediate();
  };

  async function documentIn(status: string): Promise<string> {
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: `uploads/${randomBytes(6).toString('hex')}.pdf`, size_bytes: 1, sha256: 'f'.repeat(64) };
    const id = String((await callTool(started.gateway.url, 'documents_create', doc)).body.document_id);
    await db.query('UPDATE documents SET status = $2 WHERE document_id = $1', [id, status]);
    return id;
  }

  /**
   * Runs `tested` while another transaction holds the row, moving it to `lockedTo`; once `tested`
   * waits on that lock, queues `other` behind it for the caller's slot, then commits.
   */
  async function raceAfterMiss(id: string, lockedTo: string, tested: () => Promise<ToolResponse>, other: () => Promise<ToolResponse>) {
    await db.query('BEGIN');
    await db.query('UPDATE documents SET status = $2 WHERE document_id = $1', [id, lockedTo]);
    const answer = tested();
    await waitingOnLock(db, applicationName);
    const otherAnswer = other();
    await waiting(1)();
    await db.query('COMMIT');
    return { answer: await answer, other: await otherAnswer };
  }

  // Each: the row's status, the status another transaction moves it to while the tested call
  // waits on its lock, the tested call (refused by that status), the other worker's call (which
  // changes the row again, or deletes it) and the refusal the tested call must answer.
  const races = [
    {
      title: 'documents_update: a conflict names the status that refused the write, not one written after it',
      from: 'validated', lockedTo: 'extracted',
      tested: (id: string) => call('documents_update', { document_id: id, expected_status: 'validated', status: 'archived', archive_key: 'archive/a.pdf' }),
      other: (id: string) => call('documents_update', { document_id: id, expected_status: 'extracted', status: 'validated' }),
      refusal: (id: string) => ({ code: 'conflict', message: `document ${id} is extracted, expected validated`, current_status: 'extracted' }),
    },
    {
      title: 'documents_claim: a conflict names the claim that refused it, not the status the document moved to after',
      from: 'pending', lockedTo: 'processing',
      tested: (id: string) => call('documents_claim', { document_id: id }),
      other: (id: string) => call('documents_update', { document_id: id, expected_status: 'processing', status: 'failed' }),
      refusal: (id: string) => ({ code: 'conflict', message: `document ${id} is processing, expected pending|failed`, current_status: 'processing' }),
    },
    {
      title: 'documents_delete: a conflict names the status that refused the delete, not not_found for a document deleted after it',
      from: 'archived', lockedTo: 'failed',
      tested: (id: string) => call('documents_delete', { document_id: id, expected_status: 'archived' }),
      other: (id: string) => call('documents_delete', { document_id: id, expected_status: 'failed' }),
      refusal: (id: string) => ({ code: 'conflict', message: `document ${id} is failed, expected archived`, current_status: 'failed' }),
    },
  ];
  for (const race of races) {
    it(race.title, async () => {
      const id = await documentIn(race.from);
      const { answer, other } = await raceAfterMiss(id, race.lockedTo, () => race.tested(id), () => race.other(id));
      assert.equal(answer.status, 409, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.error, race.refusal(id));
      assert.equal(other.status, 200, JSON.stringify(other.body));
    });
  }

  it('processing_logs_list: the entries of a document as it was when found, never an empty log of a document deleted meanwhile', async () => {
    const id = await documentIn('pending');
    for (const step of ['upload', 'extract']) assert.equal((await call('processing_logs_append', { document_id: id, step, status: 'succeeded' })).status, 200);
    const held = await documentIn('pending');
    // The caller's one slot is held by a call waiting on a lock; the list, then a delete of its
    // document, wait behind it in that order.
    await db.query('BEGIN');
    await db.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [held]);
    const holding = call('documents_update', { document_id: held, status: 'failed' });
    await waitingOnLock(db, applicationName);
    const listed = call('processing_logs_list', { document_id: id });
    await waiting(1)();
    const deleted = call('documents_delete', { document_id: id });
    await waiting(2)();
    await db.query('COMMIT');
    assert.equal((await holding).status, 200);
    const list = await listed;
    assert.equal((await deleted).status, 200);
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.deepEqual((list.body.entries as { step: string }[]).map((e) => e.step), ['upload', 'extract']);
    assert.equal((await call('processing_logs_list', { document_id: id })).body.error?.code, 'not_found');
  });
});
