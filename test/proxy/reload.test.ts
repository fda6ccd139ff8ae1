import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { DOC_ID, minimalPolicy, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const base = minimalPolicy('reload-test');

async function waitFor(predicate: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail('condition not reached in 5 s');
}

describe('policy hot reload', () => {
  let h: Harness;
  let file: string;
  before(async () => {
    file = writePolicy(base);
    h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
  });
  after(() => h.close());

  const ready = async () => (await (await request(`${h.sidecar.adminUrl}/ready`)).body.json()) as { status: string; policy_version: string };

  it('reports the policy version in /ready and as a metric label', async () => {
    const status = await ready();
    assert.equal(status.status, 'ready');
    assert.equal(status.policy_version, h.sidecar.policy().version);
    assert.equal(await h.metric('ca_a2a_policy_info', { version: status.policy_version }), 1);
  });

  it('swaps in a valid edit: a method added to the file is served without a restart', async () => {
    const token = await h.issuer.sign();
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 403);
    const before = (await ready()).policy_version;
    writeFileSync(file, `${base}  list_documents: {}\n`);
    await waitFor(async () => (await ready()).policy_version !== before);
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 200);
  });

  it('keeps the old policy on an invalid edit, logs every error with its line, and counts it', async () => {
    const good = readFileSync(file, 'utf8');
    const version = (await ready()).policy_version;
    const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
    writeFileSync(file, good.replace('audience: ca-a2a-agents', 'audiense: ca-a2a-agents').replace('get_document: {}', 'get_document: { parms: {} }'));
    await waitFor(async () => (await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' })) > failures);
    assert.equal((await ready()).policy_version, version);
    const line = h.audit.events('policy_reload_failed').at(-1);
    const problems = line?.problems as string[];
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.ok(problems.some((problem) => /service\.yaml:4:\d+ .*audiense/.test(problem)));
    assert.ok(problems.some((problem) => /service\.yaml:\d+:\d+ .*parms/.test(problem)));
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() })).status, 200);
    writeFileSync(file, good);
  });
});

describe('policy hot reload: edits the watcher must not miss', () => {
  const listed = async (h: Harness): Promise<number> => (await h.call(rpc('list_documents', { limit: 5 }), { token: await h.issuer.sign() })).status;

  it('applies a $ref schema file created after the reload that missed it', async () => {
    const file = writePolicy(base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
      writeFileSync(file, `${base}  list_documents: { params: { $ref: ./list.json } }\n`);
      await waitFor(async () => (await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' })) > failures);
      writeFileSync(join(file, '..', 'list.json'), JSON.stringify({ type: 'object', properties: { limit: { type: 'integer' } } }));
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('applies a $ref schema created, with its directory, after the reload that missed it', async () => {
    const root = tempDirSync('reload-ref-dir');
    mkdirSync(join(root, 'services'));
    const file = join(root, 'services', 'service.yaml');
    writeFileSync(file, base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
      writeFileSync(file, `${base}  list_documents: { params: { $ref: ../schemas/list.json } }\n`);
      await waitFor(async () => (await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' })) > failures);
      mkdirSync(join(root, 'schemas'));
      writeFileSync(join(root, 'schemas', 'list.json'), JSON.stringify({ type: 'object', properties: { limit: { type: 'integer' } } }));
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('applies an in-place edit of a policy file named without .yaml (a ConfigMap key, /etc/ca-a2a/policy)', async () => {
    const file = join(tempDirSync('reload-name'), 'validator.policy');
    writeFileSync(file, base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      writeFileSync(file, `${base}  list_documents: {}\n`);
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('keeps the policy while its file is deleted, and applies the file written again', async () => {
    const file = writePolicy(base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
      unlinkSync(file);
      await waitFor(async () => (await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' })) > failures);
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() })).status, 200);
      writeFileSync(file, `${base}  list_documents: {}\n`);
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('follows a policy directory deleted and made again under the same name', async () => {
    const dir = join(tempDirSync('reload-remade'), 'policy');
    mkdirSync(dir);
    const file = join(dir, 'service.yaml');
    writeFileSync(file, base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      rmSync(dir, { recursive: true });
      mkdirSync(dir);
      writeFileSync(file, `${base}  list_documents: {}\n`);
      await waitFor(async () => (await listed(h)) === 200);
      // The new directory's own edits are seen too (its watch is not the deleted one's).
      writeFileSync(file, base);
      await waitFor(async () => (await listed(h)) === 403);
    } finally {
      await h.close();
    }
  });

  it("follows Kubernetes' ..data swap of a mounted ConfigMap", async () => {
    const dir = tempDirSync('reload-configmap');
    for (const [version, text] of [['..2024_01', base], ['..2024_02', `${base}  list_documents: {}\n`]] as const) {
      mkdirSync(join(dir, version));
      writeFileSync(join(dir, version, 'service.yaml'), text);
    }
    symlinkSync('..2024_01', join(dir, '..data'));
    symlinkSync('..data/service.yaml', join(dir, 'service.yaml'));
    const h = await startHarness({ policyFile: join(dir, 'service.yaml'), sidecar: { watchPolicy: true } });
    try {
      assert.equal(await listed(h), 403);
      symlinkSync('..2024_02', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, '..2024_01'), { recursive: true });
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('applies an edit that lands while a reload is running', async () => {
    // A large roles file makes the reload take a while (hundreds of ms); another process edits the
    // service file while it runs, after the reload has read it.
    const dir = tempDirSync('reload-race');
    const rbac = join(dir, 'rbac.yaml');
    const filler = Array.from({ length: 3000 }, (_, i) => `  filler-${i}:\n    allow: [get_document, list_*]\n`).join('');
    writeFileSync(rbac, `${readFileSync(RBAC_FILE, 'utf8')}${filler}`);
    const file = join(dir, 'service.yaml');
    writeFileSync(file, base.replace(`rbac: ${RBAC_FILE}`, 'rbac: ./rbac.yaml'));
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    try {
      appendFileSync(rbac, '  extra:\n    allow: [get_document]\n');
      const editor = spawn('sh', ['-c', `sleep 0.05; printf '  list_documents: {}\\n' >> '${file}'`], { stdio: 'ignore' });
      await h.sidecar.reload();
      await new Promise((resolve) => editor.once('exit', resolve));
      assert.match(readFileSync(file, 'utf8'), /list_documents/);
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('applies an in-place edit of a policy file that is a symlink into another directory', async () => {
    // /etc/ca-a2a/service.yaml -> /srv/policies/service.yaml: the edit happens where the link points.
    const root = tempDirSync('reload-linked-file');
    mkdirSync(join(root, 'etc'));
    mkdirSync(join(root, 'srv'));
    writeFileSync(join(root, 'srv', 'service.yaml'), base);
    symlinkSync(join(root, 'srv', 'service.yaml'), join(root, 'etc', 'service.yaml'));
    const h = await startHarness({ policyFile: join(root, 'etc', 'service.yaml'), sidecar: { watchPolicy: true } });
    try {
      assert.equal(await listed(h), 403);
      appendFileSync(join(root, 'srv', 'service.yaml'), '  list_documents: {}\n');
      await waitFor(async () => (await listed(h)) === 200);
    } finally {
      await h.close();
    }
  });

  it('follows a policy directory swapped behind a symlink (a new release)', async () => {
    const root = tempDirSync('reload-swap');
    for (const [release, text] of [['release-1', base], ['release-2', `${base}  list_documents: {}\n`]] as const) {
      mkdirSync(join(root, release));
      writeFileSync(join(root, release, 'service.yaml'), text);
    }
    symlinkSync('release-1', join(root, 'current'));
    const h = await startHarness({ policyFile: join(root, 'current', 'service.yaml'), sidecar: { watchPolicy: true } });
    try {
      assert.equal(await listed(h), 403);
      symlinkSync('release-2', join(root, 'next'));
      renameSync(join(root, 'next'), join(root, 'current'));
      await waitFor(async () => (await listed(h)) === 200);
      // And the new release's own edits are seen too.
      writeFileSync(join(root, 'release-2', 'service.yaml'), base);
      await waitFor(async () => (await listed(h)) === 403);
    } finally {
      await h.close();
    }
  });
});

describe('policy hot reload: a stopped sidecar', () => {
  it('does not reload once stopping (a SIGHUP while it drains): no watcher or pool is made again', async () => {
    const file = writePolicy(base);
    const h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
    const version = h.sidecar.policy().version;
    await h.close();
    writeFileSync(file, `${base}  list_documents: {}\nlimits: { upstream_max_connections: 8 }\n`);
    assert.equal(await h.sidecar.reload(), version);
    assert.equal(h.audit.events('policy_reloaded').length, 0);
  });
});

describe('policy hot reload: the upstream connections of a replaced policy', () => {
  it('keeps its upstream connections through a reload that changes no limit of theirs', async () => {
    const opened: Socket[] = [];
    const agent = createServer((req, res) => {
      req.resume();
      req.on('end', () => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}'));
    });
    agent.keepAliveTimeout = 600_000;
    agent.on('connection', (socket: Socket) => opened.push(socket));
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve));
    const file = writePolicy(base);
    const h = await startHarness({ policyFile: file, sidecar: { upstream: `http://127.0.0.1:${(agent.address() as AddressInfo).port}` } });
    try {
      const token = await h.issuer.sign();
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
      writeFileSync(file, `${base}limits: { idle_timeout_ms: 120000, max_body_bytes: 2048 }\n`);
      const before = h.sidecar.policy().version;
      assert.notEqual(await h.sidecar.reload(), before);
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
      assert.equal(opened.length, 1, 'the second request went on the first connection');
      assert.equal(opened[0]?.destroyed, false);
    } finally {
      await h.close();
      agent.closeAllConnections();
      agent.close();
    }
  });

  it('finishes a request in flight on the old limits, then closes the old connections', async () => {
    // An upstream that keeps idle connections for long (the sidecar's pool would keep them 30 s),
    // holds its first answer until released, and tracks which connections are open.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const open = new Set<Socket>();
    let answered = 0;
    const agent = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const send = (): void => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}');
        if (answered++ === 0) void held.then(send);
        else send();
      });
    });
    agent.keepAliveTimeout = 600_000;
    agent.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
    });
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve));
    const file = writePolicy(base);
    const h = await startHarness({ policyFile: file, sidecar: { upstream: `http://127.0.0.1:${(agent.address() as AddressInfo).port}` } });
    try {
      const token = await h.issuer.sign();
      const inFlight = h.call(rpc('get_document', { document_id: DOC_ID }), { token });
      await waitFor(async () => answered === 1);
      const [old] = open;
      writeFileSync(file, `${base}limits: { upstream_max_connections: 8 }\n`);
      const before = h.sidecar.policy().version;
      assert.notEqual(await h.sidecar.reload(), before);
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200, 'the new policy forwards on its own connections');
      assert.equal(open.size, 2);
      release();
      assert.equal((await inFlight).status, 200, 'the request in flight on the old policy is answered');
      await waitFor(async () => !open.has(old as Socket));
      assert.equal(open.size, 1, 'the new policy keeps its connection');
    } finally {
      await h.close();
      agent.closeAllConnections();
      agent.close();
    }
  });
});
