import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { createServiceClient, type CallOutcome } from '../../../proxy/client/call.js';
import { serviceUrl } from '../../../proxy/client/cli.js';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { startSidecar, type Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { DOC_ID } from '../../helpers/harness.js';
import { startUpstream, type RecordingUpstream } from '../../helpers/upstream.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { distinct, startTarget, type Target } from '../../helpers/token-target.js';

const run = promisify(execFile);

const BIN = new URL('../../../bin/ca-a2a.js', import.meta.url).pathname;
const POLICIES_DIR = new URL('../../../policies/', import.meta.url).pathname;

describe('ca-a2a call', () => {
  let dataDir: string;
  let issuer: DevIssuer;
  let agent: RecordingUpstream;
  let sidecar: Sidecar;
  const audit = new AuditCapture();
  before(async () => {
    dataDir = tempDirSync('call');
    issuer = await startIssuer({ port: 0, dataDir });
    agent = await startUpstream();
    // The shipped archivist policy, taking DPoP-bound tokens only: the call must get one.
    const policyFile = join(tempDirSync('call-policy'), 'archivist.yaml');
    writeFileSync(policyFile, readFileSync(shippedPolicyFile('archivist'), 'utf8')
      .replace(/(?<=: )\.\.\//g, POLICIES_DIR)
      .replace(/^ {2}dpop: required.*$/m, '  dpop: required\n  require_bound_tokens: true'));
    sidecar = await startSidecar({ policyFile, upstream: agent.url, issuer: issuer.issuer, watchPolicy: false, logDestination: audit });
  });
  after(async () => {
    await sidecar.close();
    await agent.close();
    await issuer.close();
  });

  async function call(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [BIN, 'call', '--issuer', issuer.issuer, '--data-dir', dataDir, '--url', `${sidecar.url}/message`, ...args], { env: { ...process.env, CA_A2A_CLIENT_SECRET: '' } });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  }

  it('prints the result and exits 0; the call is signed (DPoP-bound token, proof, digest)', async () => {
    const { code, stdout } = await call('--client', 'viewer', '--method', 'get_document', '--params', JSON.stringify({ document_id: DOC_ID }));
    assert.equal(code, 0, stdout);
    assert.deepEqual(JSON.parse(stdout).result, { ok: true });
    assert.equal(agent.requests.at(-1)?.headers['x-ca-a2a-client-id'], 'viewer');
  });

  it('createServiceClient sends a call the service refused with 401 (token revoked) once more, with a new token', async () => {
    const secrets = await loadClientSecrets(dataDir);
    const client = await createServiceClient({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: secrets.viewer as string });
    const url = `${sidecar.url}/message`;
    assert.equal((await client.call(url, 'get_document', { document_id: DOC_ID })).kind, 'result');
    const jti = String(audit.events('authorization').at(-1)?.jti);
    await sidecar.revoker.revoke({ kind: 'jti', jti, reason: 'leaked', revokedBy: 'test' });
    const retried = await client.call(url, 'get_document', { document_id: DOC_ID });
    assert.equal(retried.kind, 'result', JSON.stringify(retried.response));
    assert.equal(audit.events('authentication_failure').at(-1)?.jti, jti, 'the revoked token was refused first');
    assert.notEqual(audit.events('authorization').at(-1)?.jti, jti);
  });

  it('createServiceClient signs a URL with a query or fragment with an htu without them (RFC 9449 §4.2)', async () => {
    const secrets = await loadClientSecrets(dataDir);
    const client = await createServiceClient({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: secrets.viewer as string });
    await client.call(`${agent.url}/message?tenant=a&token=x#part`, 'get_document', { document_id: DOC_ID });
    const seen = agent.requests.at(-1);
    assert.equal(seen?.url, '/message?tenant=a&token=x');
    assert.equal(decodeJwt(String(seen?.headers.dpop)).htu, `${agent.url}/message`);
  });

  it('createServiceClient sends once a call the service\'s agent answered 401 itself (not a refusal of the token)', async () => {
    const secrets = await loadClientSecrets(dataDir);
    const client = await createServiceClient({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: secrets.viewer as string });
    agent.respond(() => ({ status: 401, body: { jsonrpc: '2.0', id: 1, error: { code: -32001, message: 'the archive refused our API key' } } }));
    try {
      const count = agent.requests.length;
      const outcome = await client.call(`${sidecar.url}/message`, 'get_document', { document_id: DOC_ID });
      assert.equal(outcome.kind, 'error');
      assert.equal(outcome.status, 401);
      assert.equal(agent.requests.length, count + 1, 'not sent again');
    } finally {
      agent.respond(undefined);
    }
  });

  it('createServiceClient: a service that refuses every token costs a bounded number of new tokens, not one a call', async () => {
    // Refuses every token (its clock, its keys or its audience wrong, say).
    const refusing = await startTarget(() => true);
    // Refuses the first token it sees (revoked, say) and accepts the next ones.
    const revoking = await startTarget((token, seen) => token === (seen[0] ?? token));
    try {
      const secrets = await loadClientSecrets(dataDir);
      const client = await createServiceClient({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: secrets.viewer as string });
      const call = (target: Target): Promise<CallOutcome> => client.call(`${target.url}/message`, 'get_document', { document_id: DOC_ID });

      // The first 401: the call goes once more, with a new token, refused too.
      assert.equal((await call(refusing)).status, 401);
      assert.equal(refusing.tokens.length, 2);
      assert.equal(distinct(refusing.tokens), 2, 'the second went with a new token');

      // The next calls go once each, with the token the service already refused: no new token.
      for (let i = 0; i < 10; i++) {
        const refused = await call(refusing);
        assert.equal(refused.kind, 'error');
        assert.equal(refused.status, 401);
      }
      assert.equal(refusing.tokens.length, 12, 'each call sent once');
      assert.equal(distinct(refusing.tokens), 2, 'no new token for these calls');

      // Another service refusing that token (revoked) gets its one retry with a new token, and keeps it.
      assert.equal((await call(revoking)).kind, 'result');
      assert.equal(revoking.tokens.length, 2);
      assert.equal(revoking.tokens[0], refusing.tokens.at(-1));
      assert.notEqual(revoking.tokens[1], revoking.tokens[0]);
      assert.equal((await call(revoking)).kind, 'result');
      assert.equal(revoking.tokens.at(-1), revoking.tokens[1]);

      // The token changed for another reason: the refusing service's next 401 gets one retry again.
      assert.equal((await call(refusing)).status, 401);
      assert.deepEqual(refusing.tokens.slice(12, 13), revoking.tokens.slice(1, 2));
      assert.equal(refusing.tokens.length, 14);
      assert.equal(distinct(refusing.tokens), 4);
    } finally {
      refusing.close();
      revoking.close();
    }
  });

  it('prints the JSON-RPC error and exits 1 when the policy refuses', async () => {
    const { code, stdout } = await call('--client', 'viewer', '--method', 'delete_document', '--params', JSON.stringify({ document_id: DOC_ID }));
    assert.equal(code, 1);
    assert.equal(JSON.parse(stdout).error.code, -32011);
  });

  it('gives up on a service that trickles its answer: the timeout bounds the whole call, not only the gaps between bytes', async () => {
    const trickling = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"jsonrpc":"2.0","result":');
      // A byte every 50 ms for 3 s, then the end of a valid answer.
      const drip = setInterval(() => res.write(' '), 50);
      const finish = setTimeout(() => res.end('null}'), 3_000);
      res.on('close', () => {
        clearInterval(drip);
        clearTimeout(finish);
      });
    });
    await new Promise<void>((resolve) => trickling.listen(0, '127.0.0.1', resolve));
    try {
      const secrets = await loadClientSecrets(dataDir);
      const client = await createServiceClient({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: secrets.viewer as string, timeoutMs: 500 });
      const url = `http://127.0.0.1:${(trickling.address() as AddressInfo).port}/message`;
      await assert.rejects(client.call(url, 'get_document', { document_id: DOC_ID }), /no complete answer from .* within 500 ms/);
    } finally {
      trickling.closeAllConnections();
      trickling.close();
    }
  });

  it('exits 1 when the service answers JSON that is not a JSON-RPC response (an agent\'s own HTTP 500)', async () => {
    agent.respond(() => ({ status: 500, body: { detail: 'Internal Server Error' } }));
    try {
      const { code, stderr } = await call('--client', 'viewer', '--method', 'get_document', '--params', JSON.stringify({ document_id: DOC_ID }));
      assert.equal(code, 1);
      assert.match(stderr, /HTTP 500 .*not a JSON-RPC response/);
    } finally {
      agent.respond(undefined);
    }
  });

  it('sends --service S to its sidecar on the documented port: /message, and /mcp for the MCP gateway', () => {
    assert.equal(serviceUrl('archivist'), 'http://127.0.0.1:8004/message');
    assert.equal(serviceUrl('admin'), 'http://127.0.0.1:8005/message');
    assert.equal(serviceUrl('mcp'), 'http://127.0.0.1:8000/mcp');
  });

  it('exits 1 on a transport failure (interface.md: 1 on an error) and 2 on bad usage', async () => {
    const down = await run(process.execPath, [BIN, 'call', '--issuer', issuer.issuer, '--data-dir', dataDir, '--url', 'http://127.0.0.1:9/message', '--client', 'viewer', '--method', 'list_documents'], { env: { ...process.env, CA_A2A_CLIENT_SECRET: '' } }).catch((error: { code: number }) => error);
    assert.equal((down as { code: number }).code, 1);
    assert.equal((await call('--client', 'viewer', '--method', 'x', '--params', '{nope')).code, 2);
    for (const url of ['127.0.0.1:8005/message', 'ftp://127.0.0.1/message']) {
      const badUrl = await run(process.execPath, [BIN, 'call', '--issuer', issuer.issuer, '--data-dir', dataDir, '--url', url, '--client', 'viewer', '--method', 'x']).catch((error: { code: number; stderr: string }) => error);
      assert.equal((badUrl as { code: number }).code, 2, url);
      assert.match((badUrl as { stderr: string }).stderr, /--url must be an http:\/\/ or https:\/\/ URL/);
    }
  });

  it('refuses with exit 2 params that are JSON but neither an object nor an array (JSON-RPC 2.0 §4.2)', async () => {
    for (const params of ['5', '"text"', 'true', 'null']) {
      const refused = await call('--client', 'viewer', '--method', 'get_document', '--params', params);
      assert.equal(refused.code, 2, params);
      assert.equal(refused.stdout, '', params);
      assert.match(refused.stderr, /^ca-a2a call: --params must be a JSON object or array \(JSON-RPC 2\.0\), got (number|string|boolean|null)\n$/, params);
    }
  });

  it('reads --params @file, and refuses a file it cannot read with exit 2 naming the file, not as bad JSON', async () => {
    const file = join(tempDirSync('call-params'), 'params.json');
    writeFileSync(file, JSON.stringify({ document_id: DOC_ID }));
    assert.equal((await call('--client', 'viewer', '--method', 'get_document', '--params', `@${file}`)).code, 0);
    const missing = await call('--client', 'viewer', '--method', 'get_document', '--params', `@${file}.missing`);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, `ca-a2a call: --params @${file}.missing: cannot read the file: ENOENT\n`);
  });

  it('refuses an issuer that is not an http(s) URL with exit 2, naming the flag or the variable it came from', async () => {
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [['--issuer', 'ftp://127.0.0.1/realms/ca-a2a'], {}, /^ca-a2a call: --issuer must be an http\(s\) URL, got 'ftp:\/\/127\.0\.0\.1\/realms\/ca-a2a'\n$/],
      [[], { CA_A2A_ISSUER: '127.0.0.1:8080/realms/ca-a2a' }, /^ca-a2a call: CA_A2A_ISSUER must be an http\(s\) URL, got '127\.0\.0\.1:8080\/realms\/ca-a2a'\n$/],
      [['--issuer', 'nonsense'], { CA_A2A_ISSUER: 'also-nonsense' }, /^ca-a2a call: --issuer must be an http\(s\) URL, got 'nonsense'\n$/],
    ];
    for (const [flags, env, message] of cases) {
      const failed = await run(process.execPath, [BIN, 'call', '--data-dir', dataDir, '--url', `${sidecar.url}/message`, '--client', 'viewer', '--method', 'list_documents', ...flags], { env: { ...process.env, CA_A2A_CLIENT_SECRET: '', ...env } }).catch((error: { code: number; stderr: string }) => error);
      assert.equal((failed as { code: number }).code, 2, flags.join(' '));
      assert.match((failed as { stderr: string }).stderr, message);
    }
  });

  it('gets its token from a plain-http issuer off this host (compose\'s http://keycloak:8080) only with --allow-http-issuer or CA_A2A_ALLOW_HTTP_ISSUER=1', async () => {
    // Bound to 0.0.0.0, the issuer names itself http://0.0.0.0:PORT: reachable here, yet no loopback name.
    const offHost = await startIssuer({ host: '0.0.0.0', port: 0, dataDir });
    const service = await startUpstream();
    try {
      const callVia = (flags: string[], env: NodeJS.ProcessEnv) => run(process.execPath, [BIN, 'call', '--issuer', offHost.issuer, '--data-dir', dataDir, '--url', `${service.url}/message`, '--client', 'viewer', '--method', 'list_documents', ...flags], { env: { ...process.env, CA_A2A_CLIENT_SECRET: '', CA_A2A_ALLOW_HTTP_ISSUER: '', ...env } })
        .then(() => ({ code: 0, stderr: '' }), (error: { code: number; stderr: string }) => error);
      const refused = await callVia([], {});
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /must use https \(plain http is allowed on loopback only, or with --allow-http-issuer\)/);
      assert.equal((await callVia([], { CA_A2A_ALLOW_HTTP_ISSUER: 'ture' })).code, 2, 'a variable that reads as neither on nor off');
      assert.equal(service.requests.length, 0);
      await callVia(['--allow-http-issuer'], {});
      await callVia([], { CA_A2A_ALLOW_HTTP_ISSUER: '1' });
      const tokens = service.requests.map((request) => String(request.headers.authorization).replace(/^DPoP /, ''));
      assert.equal(tokens.length, 2, 'both calls reached the service');
      for (const token of tokens) assert.equal(decodeJwt(token).iss, offHost.issuer);
    } finally {
      await service.close();
      await offHost.close();
    }
  });

  it('reads an exported-but-empty CA_A2A_ISSUER as unset (the default issuer), as ca-a2a token does', async () => {
    const failed = await run(process.execPath, [BIN, 'call', '--data-dir', dataDir, '--url', 'http://127.0.0.1:9/message', '--client', 'viewer', '--method', 'list_documents'], { env: { ...process.env, CA_A2A_ISSUER: '', CA_A2A_CLIENT_SECRET: '' } }).catch((error: { code: number; stderr: string }) => error);
    assert.equal((failed as { code: number }).code, 1);
    assert.doesNotMatch((failed as { stderr: string }).stderr, /is not a URL/);
  });
});
