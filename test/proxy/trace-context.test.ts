import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseTraceparent, traceContext } from '../../proxy/http/trace-context.js';
import { DOC_ID, minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const REQUEST_ID = '0d9c4a4e-2f5b-4a8e-9a51-7d0c0c7b9f3e';
const REQUEST_HEX = '0d9c4a4e2f5b4a8e9a517d0c0c7b9f3e';

describe('traceparent (W3C Trace Context)', () => {
  it('takes a valid one, of version 00 or of a later version with more fields', () => {
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-01`), { traceId: TRACE, flags: '01' });
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, flags: '00' });
    assert.deepEqual(parseTraceparent(`cc-${TRACE}-${PARENT}-01-what-comes-later`), { traceId: TRACE, flags: '01' });
    assert.deepEqual(parseTraceparent(`cc-${TRACE}-${PARENT}-01`), { traceId: TRACE, flags: '01' });
  });

  it('refuses every malformed or forbidden shape', () => {
    const bad = [
      undefined,
      '',
      `00-${TRACE.toUpperCase()}-${PARENT}-01`, // uppercase hex
      `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
      `ff-${TRACE}-${PARENT}-01`, // version ff
      `00-${TRACE}-${PARENT}-01-extra`, // version 00 is exactly 55 characters
      `00-${TRACE}-${PARENT}-01, 00-${TRACE}-${PARENT}-01`, // two headers, as Node joins them
      `cc-${TRACE}-${PARENT}-01x`, // a later version's next field starts with a dash
      `00-${TRACE.slice(1)}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}-1`,
      ` 00-${TRACE}-${PARENT}-01`,
      `00_${TRACE}_${PARENT}_01`,
    ];
    for (const value of bad) assert.equal(parseTraceparent(value), undefined, String(value));
    assert.equal(parseTraceparent([`00-${TRACE}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01`]), undefined);
  });

  it('continues a valid trace with the request id as the new parent id, and keeps its tracestate', () => {
    assert.deepEqual(traceContext({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'a=1,b=2' }, REQUEST_ID), { traceId: TRACE, spanId: REQUEST_HEX.slice(0, 16), flags: '01', state: 'a=1,b=2' });
  });

  it('starts a trace named by the request id when there is no valid traceparent, and drops the tracestate that came with it', () => {
    const fresh = { traceId: REQUEST_HEX, spanId: REQUEST_HEX.slice(0, 16), flags: '00', state: undefined };
    assert.deepEqual(traceContext({}, REQUEST_ID), fresh);
    assert.deepEqual(traceContext({ traceparent: `ff-${TRACE}-${PARENT}-01`, tracestate: 'a=1' }, REQUEST_ID), fresh);
  });

  it('drops a tracestate longer than 512 characters rather than pass on a cut list', () => {
    const long = `a=${'x'.repeat(511)}`;
    assert.equal(traceContext({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: long }, REQUEST_ID).state, undefined);
    assert.equal(traceContext({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: long.slice(0, 512) }, REQUEST_ID).state, long.slice(0, 512));
  });
});

describe('the sidecar passes the trace on to its upstream and writes it in every audit line', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(minimalPolicy('trace-test')),
    });
    token = await h.issuer.sign();
  });
  after(() => h.close());
  const call = () => rpc('get_document', { document_id: DOC_ID });
  const hexOf = (requestId: unknown): string => String(requestId).replaceAll('-', '');

  it('continues the caller\'s trace with a parent id of its own, and passes its tracestate on', async () => {
    const res = await h.call(call(), { token, headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=opaque' } });
    assert.equal(res.status, 200);
    const seen = h.upstream.requests.at(-1);
    const requestId = seen?.headers['x-ca-a2a-request-id'];
    assert.equal(requestId, res.headers['x-ca-a2a-request-id']);
    assert.equal(seen?.headers['traceparent'], `00-${TRACE}-${hexOf(requestId).slice(0, 16)}-01`);
    assert.equal(seen?.headers['tracestate'], 'vendor=opaque');
    const line = h.audit.events('authorization').at(-1);
    assert.equal(line?.['trace_id'], TRACE);
    assert.equal(line?.['request_id'], requestId);
  });

  it('starts a trace named by the request id when the caller sent none, or an invalid one (its tracestate dropped)', async () => {
    const sent: Record<string, string>[] = [{}, { traceparent: `00-${'0'.repeat(32)}-${PARENT}-01`, tracestate: 'vendor=opaque' }];
    for (const headers of sent) {
      await h.call(call(), { token, headers });
      const seen = h.upstream.requests.at(-1);
      const hex = hexOf(seen?.headers['x-ca-a2a-request-id']);
      assert.equal(seen?.headers['traceparent'], `00-${hex}-${hex.slice(0, 16)}-00`);
      assert.equal(seen?.headers['tracestate'], undefined);
      assert.equal(h.audit.events('authorization').at(-1)?.['trace_id'], hex);
    }
  });

  it('writes the caller\'s trace id in the line of a refusal too', async () => {
    const forwarded = h.upstream.requests.length;
    const res = await h.call(call(), { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
    assert.equal(res.status, 401);
    assert.equal(h.upstream.requests.length, forwarded);
    const line = h.audit.events('authentication_failure').at(-1);
    assert.equal(line?.['trace_id'], TRACE);
    assert.equal(line?.['request_id'], res.headers['x-ca-a2a-request-id']);
  });
});
