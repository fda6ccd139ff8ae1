import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { DOC_ID, minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

/** How long the agents below keep an idle connection: gunicorn's default, and no Keep-Alive hint. */
const AGENT_IDLE_MS = 2_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function listening(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function through(upstream: string): Promise<Harness> {
  return startHarness({ policyFile: writePolicy(minimalPolicy('upstream-idle-test')), sidecar: { upstream } });
}

const ANSWER = JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} });

// The agent closing an idle connection as the sidecar writes a request on it loses that request
// (a reset, answered 502), and a POST that may have reached the agent is never sent again. The
// sidecar kept idle connections 30 s, past the idle timeout of every common server that gives no
// Keep-Alive hint, so a call coming just after the agent's timeout raced its close.
describe('idle connections to the agent', { timeout: 60_000 }, () => {
  const servers: Server[] = [];
  const harnesses: Harness[] = [];
  after(async () => {
    for (const h of harnesses) await h.close();
    for (const server of servers) {
      (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('closes them before the agent does (a Node agent with a 2 s keepAliveTimeout): every call spaced past it is answered', async () => {
    const closedBy: Array<'sidecar' | 'agent'> = [];
    let onClose: () => void = () => undefined;
    const agent = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      // Connection written by hand: Node then sends no Keep-Alive: timeout= hint.
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive' }).end(ANSWER));
    });
    agent.keepAliveTimeout = AGENT_IDLE_MS;
    agent.on('connection', (socket: Socket) => {
      // 'end' is the sidecar's FIN; the agent's own timeout destroys the socket without one.
      let ended = false;
      socket.on('end', () => (ended = true));
      socket.on('close', () => {
        closedBy.push(ended ? 'sidecar' : 'agent');
        onClose();
      });
    });
    servers.push(agent);
    const h = await through(await listening(agent));
    harnesses.push(h);
    const token = await h.issuer.sign();
    for (let i = 0; i < 3; i++) {
      const closed = new Promise<void>((resolve) => (onClose = resolve));
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      // The next call comes once the idle connection is closed, by whichever side, and past the agent's timeout.
      if (i < 2) await Promise.all([closed, sleep(AGENT_IDLE_MS + 100)]);
    }
    assert.deepEqual(closedBy, ['sidecar', 'sidecar']);
  });

  it('keeps a connection idle as long as an agent says it may (Keep-Alive: timeout=5, less 2 s), past its own 1 s', async () => {
    let connections = 0;
    // Node's default: keepAliveTimeout 5 s, said in a Keep-Alive: timeout=5 header.
    const agent = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(ANSWER));
    });
    agent.on('connection', () => connections++);
    servers.push(agent);
    const h = await through(await listening(agent));
    harnesses.push(h);
    const token = await h.issuer.sign();
    for (let i = 0; i < 2; i++) {
      if (i > 0) await sleep(1_500);
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    }
    assert.equal(connections, 1);
  });

  it('never writes a call on a connection the agent has closed: a call just past its idle timeout is answered, not 502', async () => {
    // The race made certain: a request that comes on a connection idle for AGENT_IDLE_MS meets its
    // close (what the agent's idle timer, firing just before it arrived, would have done): reset, unread.
    let answered = 0;
    const agent = createNetServer((socket: Socket) => {
      let idleSince: number | undefined;
      let received = '';
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        if (idleSince !== undefined && performance.now() - idleSince >= AGENT_IDLE_MS) {
          socket.resetAndDestroy();
          return;
        }
        idleSince = undefined;
        received += chunk.toString('latin1');
        const headEnd = received.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(received.slice(0, headEnd))?.[1] ?? 0);
        if (received.length < headEnd + 4 + length) return;
        received = received.slice(headEnd + 4 + length);
        answered++;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: ${ANSWER.length}\r\n\r\n${ANSWER}`);
        idleSince = performance.now();
      });
    });
    servers.push(agent);
    const h = await through(await listening(agent));
    harnesses.push(h);
    const token = await h.issuer.sign();
    for (let i = 0; i < 3; i++) {
      if (i > 0) await sleep(AGENT_IDLE_MS + 100);
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
      assert.equal(res.status, 200, JSON.stringify(res.json));
    }
    assert.equal(answered, 3);
    assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'upstream.unavailable' }), 0);
  });
});
