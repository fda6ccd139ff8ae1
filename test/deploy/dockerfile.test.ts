import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** deploy/Dockerfile, read (no Docker engine here): its instructions, continuation lines joined. */
const instructions = readFileSync(fileURLToPath(new URL('../../deploy/Dockerfile', import.meta.url)), 'utf8')
  .replaceAll(/\\\n/g, ' ')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

/** The instructions of the last stage, the image that runs. */
const runtimeStage = instructions.slice(instructions.findLastIndex((line) => line.startsWith('FROM ')));

describe('deploy/Dockerfile', () => {
  it('builds from an exact Node release, the same in every stage', () => {
    const args = new Map(instructions.filter((line) => line.startsWith('ARG ')).map((line) => {
      const [name = '', value = ''] = line.slice(4).split('=');
      return [name, value];
    }));
    const bases = instructions.filter((line) => line.startsWith('FROM ')).map((line) => {
      const image = line.split(/\s+/)[1] ?? '';
      return image.replace(/^\$\{(\w+)\}$/, (_, name: string) => args.get(name) ?? image);
    });
    assert.ok(bases.length >= 2);
    for (const base of bases) assert.match(base, /^node:\d+\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/, base);
    assert.equal(new Set(bases).size, 1, 'every stage builds from the same Node');
  });

  it('installs production dependencies only, with npm ci, and leaves no npm cache', () => {
    const install = instructions.find((line) => line.startsWith('RUN ') && line.includes('npm ci'));
    assert.ok(install, 'npm ci');
    assert.match(install, /--omit=dev/);
    assert.match(install, /npm cache clean --force/);
    assert.ok(!runtimeStage.some((line) => line.includes('npm ci')), 'dependencies are installed in a build stage, not the runtime one');
  });

  it('runs as a non-root numeric user set after the last command of the runtime stage', () => {
    const user = runtimeStage.findLastIndex((line) => line.startsWith('USER '));
    assert.ok(user >= 0);
    assert.match(runtimeStage[user] ?? '', /^USER [1-9][0-9]*:[1-9][0-9]*$/);
    assert.ok(runtimeStage.slice(user).every((line) => !line.startsWith('RUN ')), 'nothing runs as root after USER');
  });

  it('removes the base image\'s package managers from the runtime image', () => {
    const removed = runtimeStage.filter((line) => line.startsWith('RUN ') && /\brm -rf\b/.test(line)).join(' ');
    for (const path of ['/usr/local/lib/node_modules', '/usr/local/bin/npm', '/usr/local/bin/npx', '/usr/local/bin/corepack', '/usr/local/bin/yarn', '/opt/yarn-*']) {
      assert.ok(removed.split(/\s+/).includes(path), `runtime stage keeps ${path}`);
    }
  });
});
