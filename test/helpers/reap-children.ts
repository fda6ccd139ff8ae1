/**
 * Loaded into every test file's process (`--import` in package.json's test script). When the runner
 * cancels a file at its timeout it sends the file's process SIGTERM, whose default ends it at once
 * and leaves every process the file started (sidecars, agents, `ca-a2a up`) running, holding its
 * ports and a core for the files after it. This passes the SIGTERM on to those children first;
 * each of ours stops its own on SIGTERM.
 */
import { spawnSync } from 'node:child_process';

process.once('SIGTERM', () => {
  spawnSync('pkill', ['-TERM', '-P', String(process.pid)]);
  process.exit(143);
});
