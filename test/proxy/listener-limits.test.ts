import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isPolicyLoadError } from '../../proxy/policy/errors.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { RBAC_FILE, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { rawRequest } from '../helpers/raw-http.js';

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
