import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isPolicyLoadError } from '../../proxy/policy/errors.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { RBAC_FILE, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { rawJson, rawRequest } from '../helpers/raw-http.js';

const policy = (limits: string): string => `service: listener
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
limits: { ${limits} }
methods:
  get_document: {}
`;

/** Opens a connection, sends one complete request, and resolves with the answer once the sidecar closes the idle connection. */
function closedWhenIdle(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
    socket.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
  });
}

describe('listener limits (keep-alive, header and request timeouts)', () => {
  let h: Harness;
  let file: string;
  before(async () => {
    file = writePolicy(policy('keep_alive_timeout_ms: 200'));
    h = await startHarness({ policyFile: file });
  });
  after(() => h.close());

  it('closes a client connection idle for keep_alive_timeout_ms after its answer', async () => {
    const text = await closedWhenIdle(h.sidecar.url);
    assert.match(text, /^HTTP\/1\.1 \d{3} /, 'the request was answered on the connection first');
    assert.match(text, /^keep-alive: timeout=0\r$/im, 'the header names the policy\'s 200 ms (whole seconds)');
  });

  it('applies a reloaded policy\'s header timeout to the listener', async () => {
    writeFileSync(file, policy('keep_alive_timeout_ms: 200, headers_timeout_ms: 300, request_timeout_ms: 600'));
    const version = h.sidecar.policy().version;
    assert.notEqual(await h.sidecar.reload(), version);
    // Headers never finished: cut off at the reloaded 300 ms, not the 30 s the sidecar started with.
    const { text, closed } = await rawRequest(h.sidecar.url, 'POST /message HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n', 10_000);
    assert.ok(closed, 'cut off by the sidecar');
    assert.match(text, /^HTTP\/1\.1 408/);
  });
});

describe('listener limits: headers_timeout_ms against request_timeout_ms', () => {
  // Node's createServer throws ERR_OUT_OF_RANGE when headersTimeout > requestTimeout: such a
  // policy passed `policy validate`, then the sidecar failed to start on it.
  it('refuses to load a policy whose headers_timeout_ms is above its request_timeout_ms, naming both', async () => {
    assert.throws(() => loadPolicy(writePolicy(policy('headers_timeout_ms: 70000'))), (error: unknown) => {
      assert.ok(isPolicyLoadError(error), String(error));
      assert.match(error.problems.map((p) => `${p.path} ${p.message}`).join('\n'), /\/limits\/headers_timeout_ms headers_timeout_ms \(70000\) must not be above request_timeout_ms \(60000\)/);
      return true;
    });
    assert.throws(() => loadPolicy(writePolicy(policy('request_timeout_ms: 20000'))), /must not be above request_timeout_ms/);
    const h = await startHarness({ policyFile: writePolicy(policy('headers_timeout_ms: 5000, request_timeout_ms: 5000')) });
    await h.close();
  });
});

/** A kept-alive client connection: each ask() sends one GET and resolves with its whole answer. */
async function keptConnection(url: string): Promise<{ socket: Socket; ask(): Promise<string> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk) => {
    text += chunk.toString('utf8');
    waiting?.();
  });
  return {
    socket,
    ask: () => new Promise((resolve, reject) => {
      text = '';
      socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
      waiting = () => {
        const end = text.indexOf('\r\n\r\n');
        const length = /^content-length: *(\d+)\r$/im.exec(text)?.[1];
        if (end < 0 || length === undefined || Buffer.byteLength(text) < end + 4 + Number(length)) return;
        waiting = undefined;
        socket.removeAllListeners('close');
        resolve(text);
      };
      socket.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
    }),
  };
}

/** Connects, sends a request and resolves with what came back once the connection is closed (reset or not). */
function droppedOrAnswered(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
      // Answered: the sidecar keeps the connection; the test has what it needs.
      if (text.includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
    socket.write('GET /health HTTP/1.1\r\nHost: a\r\n\r\n');
  });
}

describe('listener limits: a client connection that sends nothing', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(policy('headers_timeout_ms: 300, request_timeout_ms: 600')) });
  });
  after(() => h.close());

  it('is answered 408 transport.timeout and closed once headers_timeout_ms has passed, and counted', async () => {
    // Node's headers timeout runs from the connection's start, not from its first byte.
    const { text, closed } = await rawRequest(h.sidecar.url, '', 10_000);
    assert.ok(closed, 'closed by the sidecar');
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.equal(rawJson(text).error?.data?.reason, 'transport.timeout');
    assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.timeout' }), 1);
  });
});

describe('listener limits: max_client_connections', () => {
  let h: Harness;
  let file: string;
  const kept: Socket[] = [];
  before(async () => {
    file = writePolicy(policy('max_client_connections: 3'));
    h = await startHarness({ policyFile: file });
  });
  after(async () => {
    for (const socket of kept) socket.destroy();
    await h.close();
  });

  it('closes a 4th connection unanswered while three are open, counts and logs it, and keeps serving the three', async () => {
    const three = await Promise.all([1, 2, 3].map(() => keptConnection(h.sidecar.url)));
    kept.push(...three.map((connection) => connection.socket));
    // Each answered once: the sidecar has accepted all three before the 4th comes.
    for (const answer of await Promise.all(three.map((connection) => connection.ask()))) assert.match(answer, /^HTTP\/1\.1 \d{3} /);

    assert.equal(await droppedOrAnswered(h.sidecar.url), '', 'the 4th connection is closed without an answer');
    assert.equal(await h.metric('ca_a2a_connections_dropped_total', { service: 'listener' }), 1);
    const [line] = h.audit.events('connections_dropped');
    assert.equal(line?.dropped, 1);
    assert.equal(line?.max_client_connections, 3);
    assert.equal(h.audit.events('connections_dropped').length, 1);

    for (const answer of await Promise.all(three.map((connection) => connection.ask()))) assert.match(answer, /^HTTP\/1\.1 \d{3} /, 'the three open connections are still served');
  });

  it('lets a connection in once a reload raises the limit', async () => {
    assert.equal(await droppedOrAnswered(h.sidecar.url), '', 'still three open: refused');
    writeFileSync(file, policy('max_client_connections: 4'));
    const version = h.sidecar.policy().version;
    assert.notEqual(await h.sidecar.reload(), version);
    assert.match(await droppedOrAnswered(h.sidecar.url), /^HTTP\/1\.1 \d{3} /, 'the 4th connection is served');
    assert.equal(await h.metric('ca_a2a_connections_dropped_total', { service: 'listener' }), 2);
  });
});

describe('listener limits: the open connections gauge', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(policy('max_client_connections: 50')) });
  });
  after(() => h.close());

  /** The inbound gauge's sample as scraped from the admin listener; undefined when the series is absent. */
  const openInbound = async (): Promise<number | undefined> => {
    const text = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
    const sample = /^ca_a2a_open_connections\{service="listener",listener="inbound"\} (\d+)$/m.exec(text)?.[1];
    return sample === undefined ? undefined : Number(sample);
  };

  it('counts the kept-alive client connections open on the proxied listener, beside the limit, and drops to 0 once they close', async () => {
    const connections = await Promise.all([1, 2, 3, 4, 5].map(() => keptConnection(h.sidecar.url)));
    // Each answered once: the sidecar has accepted all five.
    for (const answer of await Promise.all(connections.map((connection) => connection.ask()))) assert.match(answer, /^HTTP\/1\.1 \d{3} /);
    assert.equal(await openInbound(), 5, 'the admin listener\'s own scrape connection is not counted');
    assert.equal(await h.metric('ca_a2a_client_connections_limit', { service: 'listener' }), 50);

    for (const connection of connections) connection.socket.destroy();
    // The sidecar sees each close once its side of the socket ends.
    let open = await openInbound();
    for (const deadline = Date.now() + 10_000; open !== 0 && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      open = await openInbound();
    }
    assert.equal(open, 0);
  });
});
