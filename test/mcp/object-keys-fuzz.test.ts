import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { callTool, captureLogger, createTestSchema } from './helpers.js';
import type { ToolResponse } from './helpers.js';
import { Rng } from '../helpers/rng.js';

/**
 * A seeded fuzz campaign of hostile object keys against a real gateway on its local-disk bucket:
 * `..` raw and percent-encoded once, twice, thrice and four times, backslashes, absolute paths,
 * NUL and other controls, bidi controls, look-alikes (fullwidth solidus U+FF0F, division slash
 * U+2215, fullwidth full stop), NFC and NFD forms of one name, overlong keys, trailing dots and
 * spaces, a key equal to a prefix, case variants of a prefix, and symlinks the test plants in the
 * bucket directory that point outside it (and a FIFO planted there). Keys go through s3_put_object, s3_get_object,
 * s3_delete_object, s3_list_objects (as a prefix) and documents_create (as s3_key).
 *
 * The oracle is written here from docs/mcp.md, apart from mcp/: a key is refused with
 * `invalid_key` (or `invalid_arguments` when the tool's schema refuses it first: empty, over 1024
 * code points) exactly when the documented rules say so; an accepted key is its NFC form, and the
 * test keeps a model of the bucket by that form, so get after put gives the exact bytes, a listing
 * gives exactly the model's keys under the prefix, and two different accepted keys never share an
 * object. The directory around the bucket (canaries, the files the planted symlinks point to) is
 * snapshot before and compared after, and the bucket holds only object files named by 64 hex
 * digits plus whatever planted symlinks and FIFOs were not replaced. A failure names the seed and the case;
 * `FUZZ_SEED=… FUZZ_CASES=…` replays it, FUZZ_TRACE=1 prints every case.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 0x6b65_7973);
const CASES = Number(process.env.FUZZ_CASES ?? 3000);
const TRACE = process.env.FUZZ_TRACE === '1';
const MAX_OBJECT = 4096;
const PREFIXES = ['uploads/', 'archive/'];
const SCHEMA_MAX_CODE_POINTS = 1024;
const MAX_KEY_BYTES = 1024;

// ---------------------------------------------------------------- the oracle: docs/mcp.md, "S3"

/** Each run of %XX escapes decoded on its own: UTF-8 when it is, else byte for byte. */
function decodeRuns(text: string): string {
  return text.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    const bytes = Buffer.from(run.replaceAll('%', ''), 'hex');
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return bytes.toString('latin1');
    }
  });
}

/** Why the docs refuse a form, or undefined. */
function formProblem(form: string, kind: 'key' | 'prefix'): string | undefined {
  for (const ch of form) {
    const cp = ch.codePointAt(0) as number;
    if (cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)) return 'control';
    if ([0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069].includes(cp)) return 'bidi';
    // Invisible: default-ignorable, but for the joiners and the emoji variation selectors.
    if (/\p{Default_Ignorable_Code_Point}/u.test(ch) && cp !== 0x200c && cp !== 0x200d && !(cp >= 0xfe00 && cp <= 0xfe0f)) return 'invisible';
  }
  if (form.includes('\\')) return 'backslash';
  if (form.startsWith('/')) return 'absolute';
  const segments = form.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    if (seg === '.' || seg === '..') return 'dot segment';
    if (seg === '' && !(i === segments.length - 1 && kind === 'prefix')) return 'empty segment';
  }
  return undefined;
}

/** 'schema' (invalid_arguments), another reason (invalid_key), or undefined: accepted. */
function expectedRefusal(raw: string, kind: 'key' | 'prefix'): string | undefined {
  const points = [...raw].length;
  if (points === 0 || points > SCHEMA_MAX_CODE_POINTS) return 'schema';
  const key = raw.normalize('NFC');
  if (/\p{Cs}/u.test(key)) return 'lone surrogate';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return 'too long';
  let form = key;
  for (let round = 0; round <= 3; round++) {
    const why = formProblem(form, kind);
    if (why) return why;
    const next = decodeRuns(form);
    if (next === form) break;
    form = next;
  }
  if (!PREFIXES.some((p) => key.startsWith(p))) return 'outside prefixes';
  return undefined;
}

// ---------------------------------------------------------------- hostile keys

const PREFIX_VARIANTS = [
  'uploads/', 'archive/', 'uploads/', 'archive/', 'uploads/', // mostly valid, so objects get stored
  'Uploads/', 'UPLOADS/', 'ARCHIVE/', 'uploads', 'archive', 'uploads-private/', 'uploadsx/', '',
  '/uploads/', '//uploads/', './uploads/', '../uploads/', 'uploads\\', 'uploads\uFF0F', 'uploads\u2215',
  '\uFF55ploads/', '%75ploads/', 'uploads%2f', 'uploads%2F', 'uploads%252f', 'C:\\uploads\\', '/etc/', '~/uploads/',
  'uploads\u0000/', 'up\u200bloads/', 'uploads\u202e/',
];

const SEGMENTS = [
  'a', 'b', 'invoice.pdf', 'doc.txt', 'x', 'caf\u00e9', 'cafe\u0301', '\u00c5', 'A\u030a', '\u212b', // Å, Å, Å (Angstrom sign)
  '..', '.', '...', '.. ', ' ..', '..\u0000', '%2e%2e', '%2E%2e', '%2e', '.%2e', '%2e.', '%252e%252e', '%25252e%25252e',
  '%2525252e%2525252e', '%%32%65%%32%65', '%c0%ae%c0%ae', '%u002e%u002e', '..%2f..', '..%2F', '%2e%2e%2f', '%2e%2e%5c',
  '..\\..', '\\', '%5c', '%255c', 'a\\b', '\uFF0E\uFF0E', '\u2024\u2024', 'a\uFF0F..\uFF0Fb', '..\u2215..', '\u2215etc\u2215passwd',
  'a\u0000b', '%00', '%2500', 'a\u0001', 'a\u001f', 'a\u007f', 'a\u0085', 'a\u009f', '%0a', '%0d%0a', '%7f', '%c2%85',
  'a\u202efdp.exe', '%e2%80%ae', 'a\u2066', 'a\u061c', '\ud800', 'a\udc00b', '\u{1F600}', '\uFB01le', '\uFEFF', 'a\u200b', '%e2%80%8b', 'a\u00ad', 'a\u{E0041}', 'a\u200cb', 'a\u200db', '\u2764\ufe0f',
  'a.', 'a..', 'a ', 'a. ', ' ', '  ', '.hidden', 'CON', 'nul', 'aux.txt', 'a:b', 'a*?"<>|', '%', '%%', '%zz', '%2', 'a%',
  '%41', '%2f', '%252f', '%25', '+', '~', 'a;b', 'a?b#c', '\u0130', '\u0131', 'I', 'i', '\u00df', 'SS', 'planted',
];

/** A generated key (or listing prefix): a prefix variant, segments, sometimes tails and length. */
function generateKey(rng: Rng): string {
  let key = rng.pick(PREFIX_VARIANTS);
  const n = 1 + rng.int(4);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(rng.chance(0.5) ? rng.pick(SEGMENTS) : rng.pick(SEGMENTS.slice(0, 10)));
  key += parts.join(rng.chance(0.9) ? '/' : rng.pick(['//', '\\', '\uFF0F', '\u2215', '%2f', '/./', '/../']));
  if (rng.chance(0.1)) key += rng.pick(['/', '.', ' ', '/.', '/..', '%2f', '%2e', '\u0000', '\\']);
  if (rng.chance(0.05)) {
    // Around the byte cap: a key exactly at it, one byte over, or over the schema's length.
    const filler = rng.pick(['x', '\u00e9', '\u{1F600}', 'e\u0301']);
    const target = rng.pick([MAX_KEY_BYTES - 1, MAX_KEY_BYTES, MAX_KEY_BYTES + 1, 2000]);
    while (Buffer.byteLength(key.normalize('NFC')) < target) key += filler;
  }
  return key;
}

/** A variant of an accepted key that may or may not be "the same key" by the docs. */
function variantOf(rng: Rng, key: string): string {
  switch (rng.int(10)) {
    case 0:
      return key.normalize('NFD');
    case 1:
      return key.normalize('NFC');
    case 2:
      return key.toUpperCase();
    case 3:
      return key.charAt(0).toUpperCase() + key.slice(1);
    case 4:
      return key + rng.pick(['.', ' ', '..', '/', '%2e', '\u0000']);
    case 5:
      return key.replaceAll('/', rng.pick(['\uFF0F', '\u2215', '%2f', '//', '\\']));
    case 6:
      return key.replace(/\.([a-z]+)$/, '%2e$1');
    case 7:
      return encodeURIComponent(key);
    case 8:
      return key.normalize('NFKC');
    default:
      return key;
  }
}

// ---------------------------------------------------------------- the file system around the bucket

interface Entry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtimeMs: number;
  sha256?: string;
  target?: string;
}

/** Every path under `root` (symlinks not followed) except those under `skip`. */
async function snapshot(root: string, skip: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  async function walk(dir: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (path === skip) continue;
      const st = await lstat(path);
      const rel = relative(root, path);
      const base = { size: st.size, mode: st.mode, mtimeMs: st.mtimeMs };
      if (st.isSymbolicLink()) out.set(rel, { type: 'symlink', ...base, target: await readlink(path) });
      else if (st.isDirectory()) {
        out.set(rel, { type: 'dir', ...base, mtimeMs: 0 });
        await walk(path);
      } else if (st.isFile()) out.set(rel, { type: 'file', ...base, sha256: createHash('sha256').update(await readFile(path)).digest('hex') });
      else out.set(rel, { type: 'other', ...base });
    }
  }
  await walk(root);
  return out;
}

const fileOf = (key: string) => createHash('sha256').update(key).digest('hex') + '.obj';

// ---------------------------------------------------------------- the campaign

describe(`object keys fuzz on the local-disk bucket (seed ${SEED}, ${CASES} cases)`, () => {
  let gw: McpGateway;
  let root: string;
  let bucket: string;
  const cleanups: (() => Promise<void>)[] = [];
  /** Planted symlinks in the bucket: file name -> target, for keys the campaign uses. */
  const planted = new Map<string, string>();
  /** FIFOs planted in the bucket, by file name. */
  const fifos = new Set<string>();
  const plantedKeys = ['uploads/planted', 'archive/planted/b.txt', 'uploads/a/planted', 'uploads/caf\u00e9/planted'];

  before(async () => {
    const schema = await createTestSchema();
    cleanups.push(() => schema.drop());
    root = await mkdtemp(join(tmpdir(), 'ca-a2a-keyfuzz-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const dataDir = join(root, 'data');
    bucket = join(dataDir, 'bucket');
    // Canaries where a key joined onto a path would land: beside the bucket, in the data dir, above.
    for (const dir of ['uploads/a', 'archive', 'data/uploads/a', 'data/archive', 'data/bucket-x', 'outside']) await mkdir(join(root, dir), { recursive: true });
    for (const file of ['secret.txt', 'uploads/a/x', 'uploads/planted', 'data/uploads/a/x', 'data/secret.txt', 'data/bucket-x/y']) {
      await writeFile(join(root, file), `canary ${file}\n`);
    }
    gw = await startMcpGateway({ port: 0, dataDir, databaseUrl: schema.urlFor(), s3: { maxObjectBytes: MAX_OBJECT }, logger: captureLogger().logger });
    cleanups.unshift(() => gw.close());
    // Symlinks planted where the bucket keeps some keys' objects, to files outside it that look
    // like objects of those keys (a header line, then bytes), and to a directory outside it.
    for (const [i, key] of plantedKeys.entries()) {
      const target = join(root, 'outside', `${i}.obj`);
      const head = { key, size: 7, content_type: 'text/plain', last_modified: new Date(0).toISOString(), etag: '"x"' };
      await writeFile(target, JSON.stringify(head) + '\nSECRET!');
      await symlink(target, join(bucket, fileOf(key)));
      planted.set(fileOf(key), target);
    }
    await symlink(join(root, 'outside'), join(bucket, fileOf('uploads/dirlink')));
    planted.set(fileOf('uploads/dirlink'), join(root, 'outside'));
    // A FIFO under an object's name: opening it for reading would wait for a writer forever.
    execFileSync('mkfifo', [join(bucket, fileOf('uploads/fifo'))]);
    fifos.add(fileOf('uploads/fifo'));
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('refuses what the docs refuse, stores the rest by its NFC form, and never touches anything outside the bucket', async () => {
    const rng = new Rng(SEED);
    const before = await snapshot(root, bucket);
    /** The bucket as the docs say it should be: NFC key -> bytes. */
    const model = new Map<string, Buffer>();
    const recorded = new Set<string>();
    const known: string[] = [...plantedKeys, 'uploads/dirlink', 'uploads/fifo', 'uploads/a', 'archive/x.txt'];
    const counts: Record<string, number> = {};
    let caseNo = 0;
    let what = '';
    const fail = (msg: string): string => `seed ${SEED} case ${caseNo} (${what}): ${msg} — replay with FUZZ_SEED=${SEED} FUZZ_CASES=${caseNo + 1}`;

    const expectRefused = (res: ToolResponse, why: string) => {
      const code = why === 'schema' ? 'invalid_arguments' : 'invalid_key';
      assert.equal(res.status, 400, fail(`expected 400 ${code} (${why}), got ${res.status} ${JSON.stringify(res.body)}`));
      assert.equal(res.body.error?.code, code, fail(`expected ${code} (${why}), got ${JSON.stringify(res.body.error)}`));
      if (code === 'invalid_key') {
        assert.match(res.body.error?.message ?? '', /^(key|prefix) /, fail('invalid_key names what it refused'));
      }
      counts[`refused ${why}`] = (counts[`refused ${why}`] ?? 0) + 1;
    };

    const checkBucket = async () => {
      const after = await snapshot(root, bucket);
      assert.deepEqual(after, before, fail('the tree around the bucket changed'));
      let objects = 0;
      for (const name of await readdir(bucket)) {
        const st = await lstat(join(bucket, name));
        if (st.isSymbolicLink()) {
          assert.equal(await readlink(join(bucket, name)), planted.get(name), fail(`unexpected symlink ${name} in the bucket`));
          continue;
        }
        if (st.isFIFO() && fifos.has(name)) continue;
        assert.match(name, /^[0-9a-f]{64}\.obj$/, fail(`unexpected entry ${name} in the bucket`));
        assert.ok(st.isFile(), fail(`${name} is not a regular file`));
        objects++;
      }
      assert.equal(objects, model.size, fail(`the bucket holds ${objects} objects, the model ${model.size}: two keys share one or one was lost`));
    };

    // Whatever the seed: every planted entry is first read, listed and deleted as absent.
    what = 'planted entries before any put';
    for (const key of [...plantedKeys, 'uploads/dirlink', 'uploads/fifo']) {
      for (const tool of ['s3_get_object', 's3_delete_object']) {
        const res = await callTool(gw.url, tool, { key });
        assert.equal(res.status, 404, fail(`${tool} ${key} answered ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`));
      }
    }
    for (const prefix of PREFIXES) {
      const res = await callTool(gw.url, 's3_list_objects', { prefix });
      assert.deepEqual(res.body.objects, [], fail(`listing ${prefix} shows planted entries: ${JSON.stringify(res.body).slice(0, 300)}`));
    }
    await checkBucket();

    for (caseNo = 0; caseNo < CASES; caseNo++) {
      const raw = known.length > 0 && rng.chance(0.35) ? variantOf(rng, rng.pick(known)) : generateKey(rng);
      const op = rng.pick(['put', 'put', 'put', 'get', 'get', 'delete', 'list', 'create'] as const);
      what = `${op} ${JSON.stringify(raw)}`;
      if (TRACE) console.log(`case ${caseNo}: ${what}`);
      const nfc = raw.normalize('NFC');

      if (op === 'list') {
        const why = expectedRefusal(raw, 'prefix');
        const res = await callTool(gw.url, 's3_list_objects', { prefix: raw, limit: 1000 });
        if (why) {
          expectRefused(res, why);
          continue;
        }
        assert.equal(res.status, 200, fail(`listing refused: ${JSON.stringify(res.body)}`));
        const want = [...model.keys()].filter((k) => k.startsWith(nfc)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        const got = (res.body.objects as { key: string; size: number }[]).map((o) => o.key);
        assert.deepEqual(got, want, fail('listing differs from the model'));
        continue;
      }

      const why = expectedRefusal(raw, 'key');
      if (op === 'create') {
        const res = await callTool(gw.url, 'documents_create', { filename: 'f.pdf', content_type: 'application/pdf', s3_key: raw, size_bytes: 1, sha256: '0'.repeat(64) });
        if (why) {
          expectRefused(res, why);
          continue;
        }
        if (recorded.has(nfc)) {
          assert.equal(res.status, 409, fail(`a second document on one key: ${JSON.stringify(res.body)}`));
          assert.equal(res.body.error?.code, 'conflict', fail('conflict expected'));
        } else {
          assert.equal(res.status, 200, fail(`documents_create refused: ${JSON.stringify(res.body)}`));
          assert.equal(res.body.s3_key, nfc, fail('s3_key is not the NFC form'));
          recorded.add(nfc);
        }
        continue;
      }

      if (op === 'put') {
        const body = Buffer.from(Array.from({ length: rng.int(64) }, () => rng.int(256)));
        const res = await callTool(gw.url, 's3_put_object', { key: raw, content_base64: body.toString('base64'), content_type: 'application/octet-stream' });
        if (why) {
          expectRefused(res, why);
          continue;
        }
        assert.equal(res.status, 200, fail(`put refused: ${JSON.stringify(res.body)}`));
        assert.equal(res.body.key, nfc, fail('put answered another key than the NFC form'));
        assert.equal(res.body.size, body.length, fail('put size'));
        model.set(nfc, body);
        if (!known.includes(nfc)) known.push(nfc);
        counts.stored = (counts.stored ?? 0) + 1;
      } else if (op === 'get') {
        const res = await callTool(gw.url, 's3_get_object', { key: raw });
        if (why) {
          expectRefused(res, why);
          continue;
        }
        const want = model.get(nfc);
        if (want === undefined) {
          assert.equal(res.status, 404, fail(`get of a key never put answered ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`));
          assert.equal(res.body.error?.code, 'not_found', fail('not_found expected'));
        } else {
          assert.equal(res.status, 200, fail(`get refused: ${JSON.stringify(res.body)}`));
          assert.equal(res.body.key, nfc, fail('get answered another key'));
          assert.ok(Buffer.from(String(res.body.content_base64), 'base64').equals(want), fail('get after put gave other bytes'));
          assert.equal(res.body.size, want.length, fail('get size'));
        }
      } else {
        const res = await callTool(gw.url, 's3_delete_object', { key: raw });
        if (why) {
          expectRefused(res, why);
          continue;
        }
        if (model.has(nfc)) {
          assert.equal(res.status, 200, fail(`delete refused: ${JSON.stringify(res.body)}`));
          model.delete(nfc);
        } else {
          assert.equal(res.status, 404, fail(`delete of a key never put answered ${res.status} ${JSON.stringify(res.body)}`));
        }
      }
      if (caseNo % 100 === 99) await checkBucket();
    }
    await checkBucket();
    if (process.env.FUZZ_STATS === '1') console.log(counts);
    // The campaign reached both sides: objects stored and each kind of refusal.
    assert.ok((counts.stored ?? 0) > 50, `seed ${SEED}: only ${counts.stored ?? 0} objects stored`);
    for (const reason of ['dot segment', 'control', 'backslash', 'outside prefixes', 'too long', 'bidi']) {
      assert.ok((counts[`refused ${reason}`] ?? 0) > 0, `seed ${SEED}: no key refused for ${reason}`);
    }
  });
});
