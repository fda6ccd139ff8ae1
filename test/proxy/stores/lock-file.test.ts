import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, open, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { readLock, tryLock } from '../../../proxy/stores/lock-file.js';
import { lockDirectory } from '../../../proxy/stores/sql/directory-lock.js';
import { killed, nextMessage, scriptProcess } from './processes.js';

const DIRECTORY_LOCK = fileURLToPath(new URL('../../../proxy/stores/sql/directory-lock.ts', import.meta.url));

/** The id of a process that has exited. */
const deadPid = (): number => spawnSync('true').pid ?? assert.fail('could not start true');

/** A process that tries to lock `dir` and stays alive; its first message says how that went. */
const locker = (dir: string) => scriptProcess([
  `import { lockDirectory } from ${JSON.stringify(DIRECTORY_LOCK)};`,
  `try { lockDirectory(${JSON.stringify(dir)}); process.send('locked'); } catch (error) { process.send(error.message); }`,
  'setInterval(() => {}, 60_000);',
].join('\n'));

describe('lock files: taking over one left by a process that died', () => {
  const base = tempDirSync('lock');

  it('of two processes that found the same stale lock, the one that acts second is refused and leaves the first one\'s lock in place', async () => {
    const dir = join(base, 'race');
    const lockFile = `${dir}.lock`;
    await mkdir(dir);
    // The stale lock is first a FIFO: reading who holds it, the late process waits until this
    // test writes the dead holder's pid, which it does once the early process has taken over the
    // same dead holder's lock.
    assert.equal(spawnSync('mkfifo', [lockFile]).status, 0);
    const dead = deadPid();
    const late = locker(dir);
    let early;
    try {
      const fifo = await open(lockFile, 'w');
      await unlink(lockFile);
      await writeFile(lockFile, `${dead}\n`);
      early = locker(dir);
      assert.equal(await nextMessage(early), 'locked');
      await fifo.write(`${dead}\n`);
      await fifo.close();
      assert.match(await nextMessage<string>(late), new RegExp(`in use by process ${early.pid}:`));
      assert.equal(await readFile(lockFile, 'utf8'), `${early.pid}\n`);
    } finally {
      await killed(late);
      if (early) await killed(early);
    }
  });

  it('takes over a stale lock whose last taker died mid-takeover, and waits for one being taken over by a live process', async () => {
    const dir = join(base, 'claimed');
    const lockFile = `${dir}.lock`;
    await writeFile(lockFile, `${deadPid()}\n`);
    const claimFile = `${lockFile}.${readLock(lockFile)?.id}`;
    await writeFile(claimFile, `${process.ppid}\n`);
    assert.throws(() => lockDirectory(dir), new RegExp(`in use by process ${process.ppid}:`));
    await writeFile(claimFile, `${deadPid()}\n`);
    const release = lockDirectory(dir);
    assert.equal(await readFile(lockFile, 'utf8'), `${process.pid}\n`);
    assert.deepEqual((await readdir(base)).filter((name) => name.startsWith('claimed')), ['claimed.lock'], 'no claim or temporary file left');
    release();
    await assert.rejects(readFile(lockFile), { code: 'ENOENT' });
  });

  it('a holder whose lock was taken over leaves the new holder\'s lock in place when it releases', async () => {
    const path = join(base, 'taken.lock');
    const first = tryLock(path, 'first', () => false);
    const second = tryLock(path, 'second', () => true);
    assert.ok('release' in first && 'release' in second);
    first.release();
    assert.equal(await readFile(path, 'utf8'), 'second');
    second.release();
    await assert.rejects(readFile(path), { code: 'ENOENT' });
  });
});
