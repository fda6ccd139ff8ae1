import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { takerContent } from '../../../proxy/stores/lock-file.js';
import { JournalRevocationStore } from '../../../proxy/stores/revocation-journal.js';
import { killed, nextMessage, scriptProcess } from './processes.js';

const JOURNAL = fileURLToPath(new URL('../../../proxy/stores/revocation-journal.ts', import.meta.url));
const LOCK_FILE = fileURLToPath(new URL('../../../proxy/stores/lock-file.ts', import.meta.url));
const FAR = 4_000_000_000;
const line = (jti: string, expiresAt: number): string => `${JSON.stringify({ revocation: { kind: 'jti', jti, expiresAt }, revokedAt: 1, revokedBy: 'ops' })}\n`;
const jtis = async (file: string): Promise<string[]> => (await new JournalRevocationStore(file).active(0)).map((r) => (r.kind === 'jti' ? r.jti : r.kind));

interface Outcome {
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
}

/**
 * A process that, for each file it is sent, runs two compactions and two appends of `jti` at once,
 * each through a store of its own (as the sidecars of one `ca-a2a up` do), and answers how each went.
 */
const racer = () => scriptProcess([
  `import { JournalRevocationStore } from ${JSON.stringify(JOURNAL)};`,
  'process.on("message", async ({ file, jti }) => {',
  '  const store = () => new JournalRevocationStore(file);',
  `  const add = () => store().add({ revocation: { kind: 'jti', jti, expiresAt: ${FAR} }, revokedAt: 1, revokedBy: 'ops' });`,
  '  const outcomes = await Promise.allSettled([store().deleteExpired(100), add(), store().deleteExpired(100), add()]);',
  '  process.send(outcomes.map((o) => (o.status === "fulfilled" ? { ok: true, value: o.value } : { ok: false, error: String(o.reason) })));',
  '});',
  'process.send("ready");',
].join('\n'));

describe('revocation journal: writers in several processes', () => {
  const dir = tempDirSync('journal-processes');

  it('writers that find the same stale lock at once take it over one at a time: no acknowledged revocation is lost to a compaction', async () => {
    const racers = [racer(), racer()];
    try {
      await Promise.all(racers.map((child) => nextMessage(child)));
      for (let round = 0; round < 40; round++) {
        const file = join(dir, `stale-${round}.jsonl`);
        await writeFile(file, Array.from({ length: 50 }, (_, i) => line(`expired-${i}`, 1)).join('') + line('kept', FAR));
        // Left by a writer that died 50 years ago.
        await writeFile(`${file}.lock`, '');
        await utimes(`${file}.lock`, 0, 0);
        const outcomes = await Promise.all(racers.map(async (child, n) => {
          const reply = nextMessage<Outcome[]>(child);
          child.send({ file, jti: `added-${n}` });
          return reply;
        }));
        const found = await jtis(file);
        const acknowledged = ['kept', ...outcomes.flatMap((o, n) => (o.some((x) => x.ok && (x.value as { created?: boolean } | undefined)?.created === true) ? [`added-${n}`] : []))];
        assert.deepEqual(acknowledged.filter((jti) => !found.includes(jti)), [], `round ${round}: acknowledged revocations lost`);
        assert.deepEqual(outcomes.flat().filter((o) => !o.ok), [], `round ${round}: every write succeeds`);
      }
    } finally {
      await Promise.all(racers.map(killed));
    }
  });

  it('a writer killed at any moment leaves a readable journal holding every revocation it acknowledged, and its lock is taken over', async () => {
    const file = join(dir, 'killed.jsonl');
    const acknowledged: string[] = [];
    for (let life = 0; life < 6; life++) {
      // Appends one revocation that lasts and one already expired, then compacts, over and over:
      // the kill lands in an append, a compaction, a lock takeover or between them.
      const writer = scriptProcess([
        `import { JournalRevocationStore } from ${JSON.stringify(JOURNAL)};`,
        `const store = new JournalRevocationStore(${JSON.stringify(file)}, { staleLockMs: 200 });`,
        'const add = (jti, expiresAt) => store.add({ revocation: { kind: "jti", jti, expiresAt }, revokedAt: 1, revokedBy: "ops" });',
        'for (let i = 0; ; i++) {',
        `  if ((await add("life-${life}-" + i, ${FAR})).created) process.send("life-${life}-" + i);`,
        '  await add("expired-" + i, 1);',
        '  await store.deleteExpired(100);',
        '}',
      ].join('\n'));
      writer.on('message', (jti: string) => acknowledged.push(jti));
      try {
        await nextMessage(writer);
        await sleep(Math.random() * 50);
      } finally {
        await killed(writer);
      }
      const found = new Set(await jtis(file));
      assert.deepEqual(acknowledged.filter((jti) => !found.has(jti)), [], `life ${life}: every acknowledged revocation is there`);
    }
    assert.equal((await new JournalRevocationStore(file, { staleLockMs: 200 }).add({ revocation: { kind: 'jti', jti: 'after', expiresAt: FAR }, revokedAt: 1, revokedBy: 'ops', reason: 'r' })).created, true);
  });

  describe('a lock whose writer has exited', () => {
    const add = (file: string, jti: string) => new JournalRevocationStore(file, { staleLockMs: 600_000, lockTimeoutMs: 300 })
      .add({ revocation: { kind: 'jti', jti, expiresAt: FAR }, revokedAt: 1, revokedBy: 'ops', reason: 'r' });
    /** A process that takes `file`'s lock as a writer does and never releases it; it exits when told to. */
    const holder = (file: string) => scriptProcess([
      `import { takerContent, tryLock } from ${JSON.stringify(LOCK_FILE)};`,
      `tryLock(${JSON.stringify(`${file}.lock`)}, takerContent(), () => false);`,
      'process.on("message", () => process.exit(0));',
      'process.send("locked");',
    ].join('\n'));

    it('is taken over at once, long before it is stale by age, when that writer ran on this machine', async () => {
      const file = join(dir, 'exited.jsonl');
      const child = holder(file);
      try {
        await nextMessage(child);
        await assert.rejects(add(file, 'while-held'), /held by another writer/);
        const exited = once(child, 'exit');
        child.send('exit');
        await exited;
        assert.equal((await add(file, 'after-exit')).created, true);
        assert.deepEqual(await jtis(file), ['after-exit']);
      } finally {
        await killed(child);
      }
    });

    it('is left alone when its writer ran in another pid space (another container, machine or boot): only its age decides', async () => {
      const file = join(dir, 'elsewhere.jsonl');
      const [pid, space] = takerContent().split('\n');
      assert.ok(pid && space, 'this machine names its pid space');
      const dead = spawnSync('true').pid ?? assert.fail('could not start true');
      await writeFile(`${file}.lock`, `${dead}\nanother-boot ${space}\n`);
      await assert.rejects(add(file, 'elsewhere'), /held by another writer/);
      // The same dead pid in this pid space: taken over.
      await writeFile(`${file}.lock`, `${dead}\n${space}\n`);
      assert.equal((await add(file, 'here')).created, true);
    });
  });
});
