import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, chmod, copyFile, mkdir, readdir, readFile, rename, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { backendOptions, callTool, captureLogger, metricValue } from './helpers.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

// The same behaviour is required of the S3 bucket and of the local-disk bucket.
const backends = [
  { name: 's3 (s3rver)', s3: true },
  { name: 'local disk', s3: false },
];

for (const backend of backends) {
  describe(`S3 tools on ${backend.name}`, () => {
    let gw: McpGateway;
    let dataDir = '';
    let databaseUrl = '';
    const log = captureLogger();
    const cleanups: (() => Promise<void>)[] = [];

    before(async () => {
      const options = await backendOptions(backend, cleanups);
      const { s3 } = options;
      ({ dataDir, databaseUrl } = options);
      gw = await startMcpGateway({
        port: 0,
        dataDir,
        databaseUrl,
        s3: { ...s3, maxObjectBytes: 1024 },
        logger: log.logger,
      });
      cleanups.unshift(() => gw.close());
    });
    after(async () => {
      for (const c of cleanups) await c();
    });

    it('puts an object and gets back its bytes, content type and size', async () => {
      const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/a/invoice.pdf', content_base64: b64('%PDF-1.4 hello'), content_type: 'application/pdf' });
      assert.equal(put.status, 200);
      assert.equal(put.body.success, true);
      assert.equal(put.body.size, 14);
      assert.match(String(put.body.sha256), /^[0-9a-f]{64}$/);
      const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/a/invoice.pdf' });
      assert.equal(got.status, 200);
      assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), '%PDF-1.4 hello');
      assert.equal(got.body.content_type, 'application/pdf');
      assert.equal(got.body.size, 14);
    });

    it('replaces an object put twice under one key', async () => {
      await callTool(gw.url, 's3_put_object', { key: 'archive/x.txt', content_base64: b64('one'), content_type: 'text/plain' });
      await callTool(gw.url, 's3_put_object', { key: 'archive/x.txt', content_base64: b64('two!'), content_type: 'text/plain' });
      const got = await callTool(gw.url, 's3_get_object', { key: 'archive/x.txt' });
      assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), 'two!');
      const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'archive/' });
      assert.deepEqual((listed.body.objects as { key: string }[]).map((o) => o.key), ['archive/x.txt']);
    });

    it('lists by prefix in key order, one page at a time with a continuation', async () => {
      for (const k of ['c', 'a', 'b', 'd']) {
        const r = await callTool(gw.url, 's3_put_object', { key: `uploads/list/${k}.txt`, content_base64: b64(k), content_type: 'text/plain' });
        assert.equal(r.status, 200);
      }
      const first = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/list/', limit: 3 });
      assert.equal(first.status, 200);
      const keys1 = (first.body.objects as { key: string; size: number }[]).map((o) => o.key);
      assert.deepEqual(keys1, ['uploads/list/a.txt', 'uploads/list/b.txt', 'uploads/list/c.txt']);
      assert.equal(typeof first.body.next_continuation, 'string');
      const second = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/list/', limit: 3, continuation: first.body.next_continuation });
      assert.deepEqual((second.body.objects as { key: string }[]).map((o) => o.key), ['uploads/list/d.txt']);
      assert.equal(second.body.next_continuation, undefined);
    });

    // The local-disk bucket only: s3rver, the test's S3 server, compares keys as JavaScript strings
    // and loses the same key; AWS S3 lists in UTF-8 binary order, and the S3 backend passes its
    // continuation token through untouched.
    if (!backend.s3) {
      it('pages through keys beyond ASCII in UTF-8 byte order, losing none', async () => {
        // ﬁ (U+FB01) sorts before 😀 (U+1F600) in UTF-8 bytes, after it in UTF-16 units.
        const keys = ['uploads/utf8/a.txt', 'uploads/utf8/z.txt', 'uploads/utf8/\uFB01le.txt', 'uploads/utf8/\u{1F600}.txt'];
        for (const key of keys) assert.equal((await callTool(gw.url, 's3_put_object', { key, content_base64: b64('x'), content_type: 'text/plain' })).status, 200);
        const seen: string[] = [];
        let continuation: unknown;
        do {
          const page = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/utf8/', limit: 1, ...(continuation === undefined ? {} : { continuation }) });
          assert.equal(page.status, 200, JSON.stringify(page.body));
          seen.push(...(page.body.objects as { key: string }[]).map((o) => o.key));
          continuation = page.body.next_continuation;
        } while (continuation !== undefined);
        assert.deepEqual(seen, keys);
      });
    }

    // The local-disk bucket only: its directory is the gateway's, and an entry planted there under
    // an object's file name (the SHA-256 of the key) must not make a key reach outside it.
    if (!backend.s3) {
      it('takes no symlink, FIFO or directory planted in the bucket for an object, and replaces it on put', async () => {
        const bucket = join(dataDir, 'bucket');
        const file = (key: string) => createHash('sha256').update(key).digest('hex') + '.obj';
        const fileOf = (key: string) => join(bucket, file(key));
        // Outside the bucket, a file laid out like an object of the key: a header line, then bytes.
        const outside = join(dataDir, 'outside.obj');
        const secret = JSON.stringify({ key: 'uploads/planted/link.txt', size: 7, content_type: 'text/plain', last_modified: new Date(0).toISOString(), etag: '"x"' }) + '\nSECRET!';
        await writeFile(outside, secret);
        await symlink(outside, fileOf('uploads/planted/link.txt'));
        execFileSync('mkfifo', [fileOf('uploads/planted/fifo.txt')]);
        await mkdir(fileOf('uploads/planted/dir.txt'));
        for (const key of ['uploads/planted/link.txt', 'uploads/planted/fifo.txt', 'uploads/planted/dir.txt']) {
          const got = await callTool(gw.url, 's3_get_object', { key });
          assert.equal(got.status, 404, `${key}: ${JSON.stringify(got.body)}`);
          assert.equal(got.body.error?.code, 'not_found');
          const del = await callTool(gw.url, 's3_delete_object', { key });
          assert.equal(del.body.error?.code, 'not_found', key);
        }
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/planted/' });
        assert.equal(listed.status, 200, JSON.stringify(listed.body));
        assert.deepEqual(listed.body.objects, []);
        // A put replaces the symlink itself; the file it pointed to is untouched.
        const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/planted/link.txt', content_base64: b64('mine'), content_type: 'text/plain' });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/planted/link.txt' });
        assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), 'mine');
        assert.equal(await readFile(outside, 'utf8'), secret);
        const overFifo = await callTool(gw.url, 's3_put_object', { key: 'uploads/planted/fifo.txt', content_base64: b64('fifo'), content_type: 'text/plain' });
        assert.equal(overFifo.status, 200, JSON.stringify(overFifo.body));
        const fifo = await callTool(gw.url, 's3_get_object', { key: 'uploads/planted/fifo.txt' });
        assert.equal(Buffer.from(String(fifo.body.content_base64), 'base64').toString(), 'fifo');
      });
    }

    // The local-disk bucket only: its files can be damaged (a disk error, a hand edit, a copy), and
    // one bad file must not take the listing of every other object down with it.
    if (!backend.s3) {
      it('lists the objects it can read past a damaged file, refuses that one on get, and deletes it', async () => {
        const bucket = join(dataDir, 'bucket');
        const nameOf = (key: string) => createHash('sha256').update(key).digest('hex') + '.obj';
        const keys = ['a', 'b', 'c', 'd', 'e', 'z'].map((k) => `uploads/damaged/${k}.txt`);
        for (const key of keys) {
          const put = await callTool(gw.url, 's3_put_object', { key, content_base64: b64(`bytes of ${key}`), content_type: 'text/plain' });
          assert.equal(put.status, 200, JSON.stringify(put.body));
        }
        const [a, b, c, d, e, z] = keys as [string, string, string, string, string, string];
        // b: its header line cut off; c: a header that is not JSON; d: JSON, but not an object's header.
        await writeFile(join(bucket, nameOf(b)), `{"key":${JSON.stringify(b)},"si`);
        await writeFile(join(bucket, nameOf(c)), 'not json\nbytes');
        await writeFile(join(bucket, nameOf(d)), 'null\nbytes');
        // e: a file this process may not open; root opens any file, so there a header of the wrong shape.
        const root = process.getuid?.() === 0;
        if (root) await writeFile(join(bucket, nameOf(e)), `${JSON.stringify({ key: e, size: '5' })}\nbytes`);
        else await chmod(join(bucket, nameOf(e)), 0o000);
        // A copy of a's file under another name: its header names a key whose file it is not.
        const copy = `${'f'.repeat(64)}.obj`;
        await copyFile(join(bucket, nameOf(a)), join(bucket, copy));
        const expected: Record<string, string> = {
          [nameOf(b)]: 'no_header',
          [nameOf(c)]: 'header_not_json',
          [nameOf(d)]: 'header_invalid',
          [nameOf(e)]: root ? 'header_invalid' : 'EACCES',
          [copy]: 'name_mismatch',
        };
        const unreadable = (operation: string) => metricValue(gw.url, 'ca_a2a_mcp_bucket_unreadable_objects_total', { operation });
        const reported = (operation: string) =>
          Object.fromEntries(
            log.lines
              .filter((l) => l.event_type === 'mcp_bucket_object_unreadable' && l.operation === operation && l.level === 40)
              .map((l) => [String(l.file), String(l.reason)]),
          );

        const listedBefore = await unreadable('list');
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/damaged/' });
        assert.equal(listed.status, 200, JSON.stringify(listed.body));
        assert.deepEqual((listed.body.objects as { key: string }[]).map((o) => o.key), [a, z]);
        assert.deepEqual(reported('list'), expected);
        assert.equal((await unreadable('list')) - listedBefore, 5);

        const gotBefore = await unreadable('get');
        for (const key of [b, c, d, e]) {
          const got = await callTool(gw.url, 's3_get_object', { key });
          assert.equal(got.status, 502, `${key}: ${JSON.stringify(got.body)}`);
          assert.deepEqual(got.body.error, { code: 'backend_error', message: 'the bucket holds this object but cannot read it', backend: 's3' });
        }
        assert.deepEqual(Object.keys(reported('get')).sort(), [nameOf(b), nameOf(c), nameOf(d), nameOf(e)].sort());
        assert.equal((await unreadable('get')) - gotBefore, 4);
        assert.doesNotMatch(JSON.stringify(log.lines.filter((l) => l.event_type === 'mcp_bucket_object_unreadable')), /damaged/, 'keys are not logged');
        const good = await callTool(gw.url, 's3_get_object', { key: a });
        assert.equal(Buffer.from(String(good.body.content_base64), 'base64').toString(), `bytes of ${a}`);

        // Deleting a damaged object clears it; a put replaces one.
        const del = await callTool(gw.url, 's3_delete_object', { key: b });
        assert.equal(del.status, 200, JSON.stringify(del.body));
        assert.equal((await callTool(gw.url, 's3_get_object', { key: b })).body.error?.code, 'not_found');
        const put = await callTool(gw.url, 's3_put_object', { key: c, content_base64: b64('again'), content_type: 'text/plain' });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        assert.equal(Buffer.from(String((await callTool(gw.url, 's3_get_object', { key: c })).body.content_base64), 'base64').toString(), 'again');
      });
    }

    // The local-disk bucket only: a file whose bytes do not match its header's size (a write cut
    // short by a crash, a damaged disk, a hand edit) would be served cut off, or with bytes its
    // size does not count.
    if (!backend.s3) {
      /** Puts four objects under `uploads/<dir>/`, then cuts one's body short, removes another's, lengthens a third. */
      const missized = async (dir: string) => {
        const bucket = join(dataDir, 'bucket');
        const file = (key: string) => createHash('sha256').update(key).digest('hex') + '.obj';
        const [short, emptied, long, whole] = ['short', 'emptied', 'long', 'whole'].map((k) => `uploads/${dir}/${k}.txt`) as [string, string, string, string];
        for (const key of [short, emptied, long, whole]) {
          const put = await callTool(gw.url, 's3_put_object', { key, content_base64: b64(`bytes of ${key}`), content_type: 'text/plain' });
          assert.equal(put.status, 200, JSON.stringify(put.body));
        }
        const path = (key: string) => join(bucket, file(key));
        await truncate(path(short), (await stat(path(short))).size - 3);
        await truncate(path(emptied), (await readFile(path(emptied))).indexOf(0x0a) + 1);
        await appendFile(path(long), 'more');
        const expected = Object.fromEntries([[file(short), 'body_short'], [file(emptied), 'body_short'], [file(long), 'body_long']]);
        // Sorted "file reason" pairs of the warnings this operation logged for these files: one per call.
        const reported = (operation: string) =>
          log.lines
            .filter((l) => l.event_type === 'mcp_bucket_object_unreadable' && l.operation === operation && l.level === 40 && String(l.file) in expected)
            .map((l) => `${String(l.file)} ${String(l.reason)}`)
            .sort();
        const reasons = Object.entries(expected).map(([f, r]) => `${f} ${r}`).sort();
        return { missized: [short, emptied, long], whole, reported, reasons };
      };
      const unreadable = (operation: string) => metricValue(gw.url, 'ca_a2a_mcp_bucket_unreadable_objects_total', { operation });
      const keysOf = (body: Record<string, unknown>) => (body.objects as { key: string }[]).map((o) => o.key);

      it('leaves out of a listing an object whose file holds fewer or more bytes than its header says, and reports each', async () => {
        const { whole, reported, reasons } = await missized('sized-list');
        const before = await unreadable('list');
        const linesBefore = log.lines.length;
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/sized-list/' });
        assert.equal(listed.status, 200, JSON.stringify(listed.body));
        assert.deepEqual(keysOf(listed.body), [whole]);
        assert.deepEqual(reported('list'), reasons);
        // A file never read (or unreadable when last met) is read by every listing: damaged files of
        // the tests before are counted too.
        const warned = log.lines.slice(linesBefore).filter((l) => l.event_type === 'mcp_bucket_object_unreadable' && l.operation === 'list');
        assert.ok(warned.length >= 3);
        assert.equal((await unreadable('list')) - before, warned.length);
      });

      it('refuses to get an object whose file holds fewer or more bytes than its header says, with backend_error, and reports each', async () => {
        const { missized: keys, whole, reported, reasons } = await missized('sized-get');
        const before = await unreadable('get');
        for (const key of keys) {
          const got = await callTool(gw.url, 's3_get_object', { key });
          assert.equal(got.status, 502, `${key}: ${JSON.stringify(got.body)}`);
          assert.deepEqual(got.body.error, { code: 'backend_error', message: 'the bucket holds this object but cannot read it', backend: 's3' });
        }
        assert.deepEqual(reported('get'), reasons);
        assert.equal((await unreadable('get')) - before, 3);
        assert.doesNotMatch(JSON.stringify(log.lines.filter((l) => l.event_type === 'mcp_bucket_object_unreadable')), /sized-get/, 'keys are not logged');
        const good = await callTool(gw.url, 's3_get_object', { key: whole });
        assert.equal(Buffer.from(String(good.body.content_base64), 'base64').toString(), `bytes of ${whole}`);
      });

      it('deletes an object whose file holds fewer or more bytes than its header says, reporting it on the check', async () => {
        const { missized: keys, whole, reported, reasons } = await missized('sized-delete');
        const before = await unreadable('head');
        for (const key of keys) {
          const del = await callTool(gw.url, 's3_delete_object', { key });
          assert.equal(del.status, 200, `${key}: ${JSON.stringify(del.body)}`);
          assert.equal((await callTool(gw.url, 's3_get_object', { key })).body.error?.code, 'not_found', key);
        }
        assert.deepEqual(reported('head'), reasons);
        assert.equal((await unreadable('head')) - before, 3);
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/sized-delete/' });
        assert.deepEqual(keysOf(listed.body), [whole]);
      });
    }

    // The local-disk bucket only: a put writes a temp file then renames it, and a gateway killed
    // between the two leaves the temp file behind.
    if (!backend.s3) {
      it('removes temp files left over an hour ago when a gateway opens the bucket, keeps younger ones, and never lists either', async () => {
        const bucket = join(dataDir, 'bucket');
        // Laid out like objects of keys under uploads/, as a put writes its temp file.
        const tempOf = (key: string) => `${JSON.stringify({ key, size: 5, content_type: 'text/plain', last_modified: new Date().toISOString(), etag: '"x"' })}\nbytes`;
        const stale = '.tmp-00000000000000aa';
        const fresh = '.tmp-00000000000000bb';
        await writeFile(join(bucket, stale), tempOf('uploads/temps/stale.txt'));
        await writeFile(join(bucket, fresh), tempOf('uploads/temps/fresh.txt'));
        const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
        await utimes(join(bucket, stale), twoHoursAgo, twoHoursAgo);
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/temps/' });
        assert.equal(listed.status, 200, JSON.stringify(listed.body));
        assert.deepEqual(listed.body.objects, [], 'no temp file is listed');

        // A second gateway opening the same bucket, as one restarted after being killed would.
        const second = captureLogger();
        const restarted = await startMcpGateway({ port: 0, dataDir, databaseUrl, logger: second.logger });
        try {
          const entries = await readdir(bucket);
          assert.ok(!entries.includes(stale), 'the stale temp file is removed');
          assert.ok(entries.includes(fresh), 'a temp file younger than an hour may be a put in flight: kept');
          const removed = second.lines.filter((l) => l.event_type === 'mcp_bucket_temp_removed');
          assert.deepEqual(removed.map((l) => l.file), [stale]);
          for (const url of [gw.url, restarted.url]) {
            const again = await callTool(url, 's3_list_objects', { prefix: 'uploads/temps/' });
            assert.deepEqual(again.body.objects, [], 'no temp file is listed');
          }
        } finally {
          await restarted.close();
        }
      });
    }

    // The local-disk bucket only: a UNIX socket under an object's name cannot be opened at all
    // (ENXIO), unlike a FIFO; it is no object either, and must not take the listing down.
    if (!backend.s3) {
      it('takes no socket planted in the bucket for an object, lists the others past it, and replaces it on put', async () => {
        const key = 'uploads/socket/s.txt';
        const file = join(dataDir, 'bucket', createHash('sha256').update(key).digest('hex') + '.obj');
        // Bound at a short path (a socket path is limited to 108 bytes), then moved into the bucket.
        const bound = join(tmpdir(), `ca-a2a-sock-${process.pid}`);
        const server = createServer();
        await new Promise<void>((ok) => server.listen(bound, ok));
        await rename(bound, file);
        await new Promise<void>((ok) => server.close(() => ok()));
        await callTool(gw.url, 's3_put_object', { key: 'uploads/socket/t.txt', content_base64: b64('t'), content_type: 'text/plain' });
        const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/socket/' });
        assert.equal(listed.status, 200, JSON.stringify(listed.body));
        assert.deepEqual((listed.body.objects as { key: string }[]).map((o) => o.key), ['uploads/socket/t.txt']);
        const got = await callTool(gw.url, 's3_get_object', { key });
        assert.equal(got.status, 404, JSON.stringify(got.body));
        assert.equal((await callTool(gw.url, 's3_delete_object', { key })).body.error?.code, 'not_found');
        const put = await callTool(gw.url, 's3_put_object', { key, content_base64: b64('mine'), content_type: 'text/plain' });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        assert.equal(Buffer.from(String((await callTool(gw.url, 's3_get_object', { key })).body.content_base64), 'base64').toString(), 'mine');
      });
    }

    it('deletes an object, then reports not_found for get and delete', async () => {
      await callTool(gw.url, 's3_put_object', { key: 'uploads/gone.txt', content_base64: b64('x'), content_type: 'text/plain' });
      const del = await callTool(gw.url, 's3_delete_object', { key: 'uploads/gone.txt' });
      assert.equal(del.status, 200);
      assert.equal(del.body.deleted, true);
      const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/gone.txt' });
      assert.equal(got.status, 404);
      assert.equal(got.body.error?.code, 'not_found');
      const again = await callTool(gw.url, 's3_delete_object', { key: 'uploads/gone.txt' });
      assert.equal(again.body.error?.code, 'not_found');
    });

    it('refuses an object over the size cap with too_large and stores nothing', async () => {
      const r = await callTool(gw.url, 's3_put_object', { key: 'uploads/big.bin', content_base64: b64(Buffer.alloc(1025)), content_type: 'application/octet-stream' });
      assert.equal(r.status, 413);
      assert.equal(r.body.error?.code, 'too_large');
      const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/big.bin' });
      assert.equal(got.body.error?.code, 'not_found');
    });

    const badKeys: [string, string][] = [
      ['parent traversal', 'uploads/../etc/passwd'],
      ['percent-encoded traversal', 'uploads/%2e%2e/secret'],
      ['double-encoded traversal', 'uploads/%252e%252e/secret'],
      ['encoded slash traversal', 'uploads/..%2fsecret'],
      ['encoded traversal behind a lone %', 'uploads/%2e%2e/archive/x%'],
      ['encoded traversal behind an invalid byte', 'uploads/%2e%2e%2farchive%2fx%ff'],
      ['encoded backslash behind a lone %', 'uploads/%5c..%5cx%'],
      ['encoded CR LF behind a lone %', 'uploads/%0d%0aX-Injected:%201%'],
      ['encoded NUL behind a lone %', 'uploads/%00evil%'],
      ['leading slash', '/uploads/a.txt'],
      ['control character', 'uploads/a\u0000b.txt'],
      ['newline', 'uploads/a\nb.txt'],
      ['backslash', 'uploads\\..\\a.txt'],
      ['outside the allowed prefixes', 'private/a.txt'],
      ['prefix look-alike', 'uploadsX/a.txt'],
      ['dot segment', 'uploads/./a.txt'],
      ['empty segment', 'uploads//a.txt'],
      ['over the length cap', `uploads/${'a'.repeat(1020)}`],
      ['lone surrogate', 'uploads/a\ud800.txt'],
      ['right-to-left override', 'uploads/invoice\u202efdp.exe'],
      ['zero-width space', 'uploads/invoice\u200b.pdf'],
      ['zero-width no-break space', 'uploads/\ufeffinvoice.pdf'],
      ['soft hyphen', 'uploads/in\u00advoice.pdf'],
      ['tag characters (hidden ASCII)', 'uploads/invoice\u{E0069}\u{E0067}.pdf'],
      ['percent-encoded zero-width space', 'uploads/invoice%e2%80%8b.pdf'],
    ];
    for (const [what, key] of badKeys) {
      it(`refuses a key with ${what} (invalid_key) on every S3 tool`, async () => {
        const calls: [string, Record<string, unknown>][] = [
          ['s3_put_object', { key, content_base64: b64('x'), content_type: 'text/plain' }],
          ['s3_get_object', { key }],
          ['s3_delete_object', { key }],
        ];
        for (const [tool, args] of calls) {
          const r = await callTool(gw.url, tool, args);
          assert.equal(r.status, 400, `${tool} ${JSON.stringify(key)}`);
          assert.ok(['invalid_key', 'invalid_arguments'].includes(String(r.body.error?.code)), `${tool}: ${r.body.error?.code}`);
        }
      });
    }

    it('names the invisible character it refuses in a key', async () => {
      const r = await callTool(gw.url, 's3_put_object', { key: 'uploads/a\u2060b.txt', content_base64: b64('x'), content_type: 'text/plain' });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.deepEqual(r.body.error, { code: 'invalid_key', message: 'key contains an invisible character (U+2060)' });
    });

    it('keeps the zero-width joiners and emoji variation selectors that scripts and emoji need', async () => {
      for (const key of ['uploads/\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt', 'uploads/\u{1F469}\u200d\u{1F4BB}.txt', 'uploads/\u2764\ufe0f.txt']) {
        const put = await callTool(gw.url, 's3_put_object', { key, content_base64: b64(key), content_type: 'text/plain' });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        const got = await callTool(gw.url, 's3_get_object', { key });
        assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), key);
      }
    });

    it('keeps a literal % and harmless escapes in a key', async () => {
      for (const key of ['uploads/100% done.txt', 'uploads/r%C3%A9sum%C3%A9%.pdf']) {
        const put = await callTool(gw.url, 's3_put_object', { key, content_base64: b64('x'), content_type: 'text/plain' });
        assert.equal(put.status, 200, `${key}: ${JSON.stringify(put.body)}`);
        const got = await callTool(gw.url, 's3_get_object', { key });
        assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), 'x');
      }
    });

    it('refuses a listing prefix outside the allowed prefixes or with traversal', async () => {
      for (const prefix of ['', 'up', '/uploads/', 'uploads/../', 'archive/%2e%2e/']) {
        const r = await callTool(gw.url, 's3_list_objects', { prefix });
        assert.equal(r.status, 400, prefix);
        assert.ok(['invalid_key', 'invalid_arguments'].includes(String(r.body.error?.code)));
      }
    });

    it('refuses malformed arguments before touching the bucket', async () => {
      const cases: [string, unknown][] = [
        ['s3_put_object', { key: 'uploads/a.txt', content_base64: 'not base64!', content_type: 'text/plain' }],
        ['s3_put_object', { key: 'uploads/a.txt', content_base64: 'YQ', content_type: 'text/plain' }],
        ['s3_put_object', { key: 'uploads/a.txt', content_base64: b64('a'), content_type: 'nonsense' }],
        ['s3_get_object', { key: 'uploads/a.txt', extra: 1 }],
        ['s3_list_objects', { prefix: 'uploads/', limit: 0 }],
        ['s3_get_object', {}],
      ];
      for (const [tool, args] of cases) {
        const r = await callTool(gw.url, tool, args);
        assert.equal(r.status, 400, JSON.stringify(args));
        assert.equal(r.body.error?.code, 'invalid_arguments');
      }
    });
  });
}

// A bucket that is not there (a wrong CA_A2A_S3_BUCKET, a bucket deleted) is the gateway's
// failure, not the caller's missing object: S3 answers GetObject with 404 NoSuchBucket.
describe('S3 tools on a bucket that does not exist (s3rver)', () => {
  let gw: McpGateway;
  const log = captureLogger();
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const { dataDir, databaseUrl, s3 } = await backendOptions({ s3: true }, cleanups);
    gw = await startMcpGateway({ port: 0, dataDir, databaseUrl, s3: { ...s3, bucket: 'no-such-bucket' }, logger: log.logger });
    cleanups.unshift(() => gw.close());
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('answers s3_get_object with 500 internal (counted as a permanent s3 failure, logged), never not_found', async () => {
    const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/a.txt' }, { 'x-ca-a2a-request-id': 'req-no-bucket' });
    assert.equal(got.status, 500, JSON.stringify(got.body));
    assert.deepEqual(got.body.error, { code: 'internal', message: 'internal error' });
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 's3', result: 'permanent' }), 1);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_tool_calls_total', { tool: 's3_get_object', outcome: 'internal' }), 1);
    const line = log.lines.find((l) => l.event_type === 'mcp_tool_error' && l.tool === 's3_get_object');
    assert.equal((line?.err as { name?: string } | undefined)?.name, 'NoSuchBucket');
  });

  it('answers s3_put_object and s3_list_objects with 500 internal too', async () => {
    const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/a.txt', content_base64: b64('a'), content_type: 'text/plain' });
    assert.equal(put.status, 500);
    const listed = await callTool(gw.url, 's3_list_objects', { prefix: 'uploads/' });
    assert.equal(listed.status, 500);
  });
});
