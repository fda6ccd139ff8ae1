import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { parse } from 'yaml';
import { startSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { accepts } from '../helpers/raw-http.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';

const AGENT = fileURLToPath(new URL('../../examples/foreign-agent/server.js', import.meta.url));
const POLICY = fileURLToPath(new URL('../../examples/foreign-agent/policy.yaml', import.meta.url));

/** Starts the example agent as its own process (it is "not ours") and reads its address. */
async function startForeignAgent(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [AGENT], { env: { ...process.env, LISTEN: '127.0.0.1:0' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  for await (const chunk of child.stdout ?? []) {
    out += String(chunk);
    const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
    if (match?.[1] !== undefined) return { child, url: match[1] };
  }
  throw new Error(`foreign agent exited: ${out}`);
}

describe('the sidecar in front of a foreign agent (examples/foreign-agent)', () => {
  let agent: { child: ChildProcess; url: string };
  let issuer: TestIssuer;
  let sidecar: Sidecar;

  before(async () => {
    agent = await startForeignAgent();
    issuer = await startTestIssuer();
    sidecar = await startSidecar({
      policyFile: POLICY,
      listen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      upstream: agent.url,
      issuer: issuer.issuer,
      watchPolicy: false,
      logDestination: { write: () => undefined },
    });
  });
  after(async () => {
    await sidecar.close();
    await issuer.close();
    agent.child.kill('SIGTERM');
    await once(agent.child, 'exit');
  });

  const echo = async (token: string | undefined, params: unknown, headers: Record<string, string> = {}) => {
    const res = await request(`${sidecar.url}/message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'echo', params }),
    });
    return { status: res.statusCode, json: (await res.body.json()) as { result?: { message: string; caller: Record<string, unknown> }; error?: { code: number } } };
  };

  it('binds the agent to 127.0.0.1 only', async () => {
    // What it prints is what it was told; what it accepts is what it bound. Another address of
    // this host (here one more loopback address) reaches an agent bound to every interface.
    const port = Number(new URL(agent.url).port);
    assert.equal(await accepts('127.0.0.1', port), true);
    assert.equal(await accepts('127.0.0.2', port), false, 'reachable on another address of the host');
  });

  it('forwards an authorized call and hands the agent the caller identity headers', async () => {
    const token = await issuer.sign({ sub: 'service-account-partner', azp: 'partner', realm_access: { roles: ['echo-caller'] } });
    const res = await echo(token, { message: 'hello' }, { 'x-ca-a2a-subject': 'forged-admin', 'x-ca-a2a-roles': 'admin' });
    assert.equal(res.status, 200);
    assert.equal(res.json.result?.message, 'hello');
    const caller = res.json.result?.caller ?? {};
    assert.equal(caller['subject'], 'service-account-partner', 'client-supplied x-ca-a2a-subject is dropped');
    assert.equal(caller['client_id'], 'partner');
    assert.deepEqual(caller['roles'], ['echo-caller'], 'client-supplied x-ca-a2a-roles is dropped');
    assert.match(String(caller['request_id']), /^[0-9a-f-]{36}$/);
  });

  it('refuses a caller without the role (403), without a token (401) and with invalid params (400)', async () => {
    const viewer = await issuer.sign({ realm_access: { roles: ['viewer'] } });
    assert.equal((await echo(viewer, { message: 'x' })).status, 403);
    assert.equal((await echo(undefined, { message: 'x' })).status, 401);
    const caller = await issuer.sign({ realm_access: { roles: ['echo-caller'] } });
    assert.equal((await echo(caller, { note: 'no message' })).status, 400);
  });

  it('serves /ready on the admin listener and forwards the public GET /health', async () => {
    const ready = await request(`${sidecar.adminUrl}/ready`);
    await ready.body.dump();
    assert.equal(ready.statusCode, 200);
    const health = await request(`${sidecar.url}/health`);
    assert.deepEqual(await health.body.json(), { status: 'ok' });
  });

  it('is what the ECS and Kubernetes fragments of docs/deploy.md run: the example\'s policy file, the shared revocations and Redis, no client secret without egress', () => {
    const docs = readFileSync(fileURLToPath(new URL('../../docs/deploy.md', import.meta.url)), 'utf8');
    const block = (heading: string, fence: string): string => {
      const section = docs.slice(docs.indexOf(heading));
      return new RegExp(`\`\`\`${fence}\\n([\\s\\S]*?)\`\`\``).exec(section)?.[1] ?? '';
    };
    type Env = Array<{ name: string }>;
    const ecs = JSON.parse(block('### ECS task definition fragment', 'json')) as { containerDefinitions: Array<{ name: string; command?: string[]; secrets?: Env; environment?: Env }> };
    const pod = parse(block('### Kubernetes pod fragment', 'yaml')) as { spec: { containers: Array<{ name: string; args?: string[]; env?: Env }> } };
    const ecsSidecar = ecs.containerDefinitions.find((c) => c.name === 'sidecar');
    const podSidecar = pod.spec.containers.find((c) => c.name === 'sidecar');
    const fragments = [
      { where: 'ECS', args: ecsSidecar?.command ?? [], env: [...(ecsSidecar?.secrets ?? []), ...(ecsSidecar?.environment ?? [])] },
      { where: 'Kubernetes', args: podSidecar?.args ?? [], env: podSidecar?.env ?? [] },
    ];
    for (const { where, args, env } of fragments) {
      const policy = args[args.indexOf('--policy') + 1] ?? '';
      // The example's files keep their names where they are mounted or copied (policy.yaml, rbac.yaml).
      assert.ok(existsSync(path.join(path.dirname(POLICY), path.basename(policy))), `${where}: --policy ${policy} is not a file of examples/foreign-agent`);
      const names = env.map((e) => e.name).sort();
      // Without DATABASE_URL a sidecar keeps revocations in its own /tmp: one started after a
      // revocation accepts the revoked token.
      assert.ok(names.includes('DATABASE_URL') && names.includes('REDIS_URL'), `${where}: ${names.join()}`);
      assert.equal(names.includes('CA_A2A_CLIENT_SECRET'), args.includes('--egress-listen'), `${where}: a client secret only with an egress listener`);
    }
  });
});
