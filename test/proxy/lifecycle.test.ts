import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { shippedPolicyFile } from '../../proxy/services.js';
import { startSidecar } from '../../proxy/sidecar.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { DOC_ID, RBAC_FILE, rpc, writePolicy } from '../helpers/harness.js';
import { startTestIssuer } from '../helpers/test-issuer.js';
import { startUpstream } from '../helpers/upstream.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const listening = (server: Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));

/** A port nothing listens on now (the OS's pick, released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listening(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const refuses = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

/** Runs `ca-a2a sidecar --policy FILE` on PORT; `out()` is everything it wrote so far, stdout and stderr. */
function spawnSidecar(policy: string, port: number, dataDir: string, env: NodeJS.ProcessEnv = {}): { child: ChildProcess; out(): string; exited: Promise<[number | null, string | null]> } {
  const child = spawn(process.execPath, ['bin/ca-a2a.js', 'sidecar', '--policy', policy, '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0', '--no-watch'], {
    env: { ...process.env, CA_A2A_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<[number | null, string | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
  return { child, out: () => out, exited };
}

/** A policy for one method, get_document, forwarded to UPSTREAM. */
const drainPolicy = (upstream: string, issuer: string): string =>
  writePolicy(`service: drain
rbac: ${RBAC_FILE}
upstream: ${upstream}
auth: { issuer: ${issuer}, audience: ca-a2a-agents }
integrity: { dpop: off }
methods:
  get_document: {}
`);

describe('sidecar start-up', () => {
  it('leaves nothing listening when a later listener cannot bind', async () => {
    const busy = createServer();
    const busyPort = await listening(busy);
    const proxied = await freePort();
    try {
      await assert.rejects(
        startSidecar({ policyFile: shippedPolicyFile('archivist'), listen: `127.0.0.1:${proxied}`, adminListen: `127.0.0.1:${busyPort}`, upstream: 'http://127.0.0.1:1', issuer: 'http://127.0.0.1:1/realms/test' }),
        (error: { code?: string }) => error.code === 'EADDRINUSE',
      );
      assert.equal(await refuses(proxied), true, 'the proxied port is closed again, not serving without /ready and /metrics');
    } finally {
      busy.close();
    }
  });

  it('starts egress against a plain-http issuer off this host only when told to, and says so', async () => {
    // The issuer of the AWS stack and of compose: a private name over http, TLS left to the network.
    const base = { policyFile: shippedPolicyFile('orchestrator'), upstream: 'http://127.0.0.1:1', issuer: 'http://keycloak.invalid:8080/realms/ca-a2a', egressListen: '127.0.0.1:0', clientSecret: 'secret', watchPolicy: false };
    await assert.rejects(startSidecar({ ...base, logDestination: new AuditCapture() }), (error: { code?: string }) => error.code === 'INVALID_OPTIONS');
    const log = new AuditCapture();
    const sidecar = await startSidecar({ ...base, allowHttpIssuer: true, logDestination: log });
    try {
      assert.match(String(sidecar.egressUrl), /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(log.events('issuer_plain_http').length, 1);
    } finally {
      await sidecar.close();
    }
  });
});

describe('ca-a2a sidecar (the command)', () => {
  it('lets --policy on the command line win over CA_A2A_SERVICE in the environment', async () => {
    const child = spawn(process.execPath, ['bin/ca-a2a.js', 'sidecar', '--policy', shippedPolicyFile('archivist'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:1', '--issuer', 'http://127.0.0.1:1/realms/test', '--no-watch'], {
      env: { ...process.env, CA_A2A_SERVICE: 'orchestrator', CA_A2A_DATA_DIR: tempDirSync('cli') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      const ready = new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('"sidecar_started"') && resolve()));
      const first = await Promise.race([ready.then(() => 'ready'), exited.then((code) => `exited ${code}`)]);
      assert.equal(first, 'ready', out);
      assert.match(out, /"service":"archivist"/);
    } finally {
      child.kill();
    }
  });

  it('drains in-flight requests through a second SIGTERM, instead of dying on it', async () => {
    const [upstream, issuer, port] = await Promise.all([startUpstream(), startTestIssuer(), freePort()]);
    const policy = drainPolicy(upstream.url, issuer.issuer);
    const { child, out, exited } = spawnSidecar(policy, port, tempDirSync('cli'));
    try {
      await new Promise<void>((resolve) => child.stdout?.on('data', () => out().includes('"sidecar_started"') && resolve()));
      let release: () => void = () => undefined;
      upstream.respond((request) => ({ body: { jsonrpc: '2.0', id: 1, result: { url: request.url } }, after: new Promise<void>((resolve) => (release = resolve)) }));
      const answer = fetch(`http://127.0.0.1:${port}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await issuer.sign()}` },
        body: JSON.stringify(rpc('get_document', { document_id: DOC_ID })),
      });
      while (upstream.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      child.kill('SIGTERM');
      while (!(await refuses(port))) await new Promise((resolve) => setTimeout(resolve, 10));
      // Draining now: npm forwarding the signal again, or a supervisor repeating it.
      child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      assert.equal((await answer).status, 200, out());
      assert.deepEqual(await exited, [0, null], out());
    } finally {
      child.kill('SIGKILL');
      await Promise.all([upstream.close(), issuer.close()]);
    }
  });

  it('cuts what is still in flight at the drain deadline CA_A2A_DRAIN_TIMEOUT_MS sets, logs it and exits 0', async () => {
    const [upstream, issuer, port] = await Promise.all([startUpstream(), startTestIssuer(), freePort()]);
    const policy = drainPolicy(upstream.url, issuer.issuer);
    // The default (25 s) would outlast this test's timeout: exiting at all shows the variable is read.
    const { child, out, exited } = spawnSidecar(policy, port, tempDirSync('cli'), { CA_A2A_DRAIN_TIMEOUT_MS: '300' });
    try {
      await new Promise<void>((resolve) => child.stdout?.on('data', () => out().includes('"sidecar_started"') && resolve()));
      upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: {} }, after: new Promise<void>(() => undefined) }));
      const answer = fetch(`http://127.0.0.1:${port}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await issuer.sign()}` },
        body: JSON.stringify(rpc('get_document', { document_id: DOC_ID })),
      }).then(
        (response) => response.text(),
        (error: Error) => error.name,
      );
      while (upstream.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      child.kill('SIGTERM');
      assert.deepEqual(await exited, [0, null], out());
      assert.match(out(), /"sidecar_draining".*"in_flight":1,"drain_timeout_ms":300/, out());
      assert.match(out(), /"sidecar_drain_timeout".*"in_flight":1/, out());
      assert.equal(await answer, 'TypeError', 'the request still in flight was cut');
    } finally {
      child.kill('SIGKILL');
      await Promise.all([upstream.close(), issuer.close()]);
    }
  });

  it('keeps a SIGTERM that arrives while it starts: it finishes starting, closes and exits 0, instead of dying on it', async () => {
    // The policy file is a FIFO: the sidecar is held reading it, mid-start, until the test writes it.
    const dir = tempDirSync('cli');
    const policy = join(dir, 'policy.yaml');
    execFileSync('mkfifo', [policy]);
    const port = await freePort();
    const { child, out, exited } = spawnSidecar(policy, port, dir);
    try {
      const writer = await open(policy, 'w'); // resolves once the sidecar has opened it to read
      child.kill('SIGTERM');
      await writer.writeFile(`service: starting
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://127.0.0.1:1/realms/test, audience: ca-a2a-agents }
methods:
  get_document: {}
`);
      await writer.close();
      assert.deepEqual(await exited, [0, null], out());
      assert.match(out(), /"sidecar_started".*\n(.*\n)*.*"sidecar_draining".*\n(.*\n)*.*"sidecar_stopped"/, out());
      assert.equal(await refuses(port), true);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('keeps a SIGHUP that arrives while it starts: it finishes starting, then reloads, instead of dying on it', async () => {
    // As above, the policy file is a FIFO: the sidecar reads it at the start, and again when it reloads.
    const dir = tempDirSync('cli');
    const policy = join(dir, 'policy.yaml');
    execFileSync('mkfifo', [policy]);
    const text = `service: hangup
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://127.0.0.1:1/realms/test, audience: ca-a2a-agents }
methods:
  get_document: {}
`;
    const port = await freePort();
    const { child, out, exited } = spawnSidecar(policy, port, dir);
    let exit: [number | null, string | null] | undefined;
    void exited.then((value) => (exit = value));
    try {
      const writer = await open(policy, 'w');
      child.kill('SIGHUP'); // a config reloader that signals on every change, this one while the sidecar starts
      await writer.writeFile(text);
      await writer.close();
      // Listening: the start has read the file (the reload then waits for the FIFO's next writer).
      while (exit === undefined && (await refuses(port))) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(exit, undefined, out());
      // The signal's reload reads the file as it is now: the edit it was sent for.
      const again = await open(policy, 'w');
      await again.writeFile(`${text}  list_documents: {}\n`);
      await again.close();
      await new Promise<void>((resolve) => child.stdout?.on('data', () => out().includes('"policy_reloaded"') && resolve()));
      child.kill('SIGTERM');
      assert.deepEqual(await exited, [0, null], out());
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses a flag URL that is not http(s) or a listen address that is not HOST:PORT in one line, exit 2, as the policy file would have been', async () => {
    const cases: [string[], RegExp][] = [
      [['--issuer', 'notaurl'], /^ca-a2a sidecar: --issuer must be an http\(s\) URL, got 'notaurl'$/],
      [['--upstream', 'ftp://127.0.0.1/x'], /^ca-a2a sidecar: --upstream must be an http\(s\) URL/],
      [['--public-url', 'archivist.example.com/message'], /^ca-a2a sidecar: --public-url must be an http\(s\) URL/],
      [['--service-url', 'mcp=127.0.0.1:8000'], /^ca-a2a sidecar: --service-url must be an http\(s\) URL/],
      [['--public-url', 'https://archivist.example.com/?tenant=a'], /^ca-a2a sidecar: --public-url is an origin with an optional path, without a query, fragment or user, got 'https:\/\/archivist\.example\.com\/\?tenant=a'$/],
      [['--public-url', 'https://ops@archivist.example.com'], /^ca-a2a sidecar: --public-url is an origin with an optional path/],
      [['--trusted-proxy', '10.0.1.0/33'], /^ca-a2a sidecar: --trusted-proxy must be an IP address or CIDR, got '10\.0\.1\.0\/33'$/],
      [['--listen', '127.0.0.1:99999'], /^ca-a2a sidecar: --listen '127\.0\.0\.1:99999' is not HOST:PORT \(IPv6 in brackets, port 0 to 65535\)$/],
      [['--admin-listen', 'localhost'], /^ca-a2a sidecar: --admin-listen 'localhost' is not HOST:PORT/],
      [['--egress-listen', '127.0.0.1:'], /^ca-a2a sidecar: --egress-listen '127\.0\.0\.1:' is not HOST:PORT/],
      [['--drain-timeout-ms', '25s'], /^ca-a2a sidecar: --drain-timeout-ms must be a whole number of milliseconds from 0 to 600000, got '25s'$/],
      [['--drain-timeout-ms', '600001'], /^ca-a2a sidecar: --drain-timeout-ms must be a whole number/],
      [['--drain-timeout-ms=-1'], /^ca-a2a sidecar: --drain-timeout-ms must be a whole number/],
    ];
    for (const [flags, message] of cases) {
      const child = spawn(process.execPath, ['bin/ca-a2a.js', 'sidecar', '--service', 'archivist', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--no-watch', ...flags], {
        env: { ...process.env, CA_A2A_DATA_DIR: tempDirSync('cli') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      const started = new Promise<string>((resolve) => child.stdout.on('data', () => out.includes('"sidecar_started"') && resolve('started')));
      const outcome = await Promise.race([exited, started]);
      child.kill();
      assert.equal(outcome, 2, `${flags.join(' ')}: ${out}`);
      assert.match(out.trim(), message);
    }
  });
});
