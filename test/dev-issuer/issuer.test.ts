import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { clientSecretsPath, DEV_CLIENTS, ensureClientSecrets, loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { ensurePrivateDir } from '../../deploy/dev-issuer/files.js';
import { startIssuer, type DevIssuer } from '../../deploy/dev-issuer/issuer.js';
import { signingKeyPath } from '../../deploy/dev-issuer/signing-key.js';
import { rawTokenRequest, tempDir } from './helpers.js';

interface Discovery {
  issuer: string;
  jwks_uri: string;
  token_endpoint: string;
  grant_types_supported: string[];
  token_endpoint_auth_methods_supported: string[];
  dpop_signing_alg_values_supported: string[];
}

describe('dev issuer', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let issuer: DevIssuer;
  let discovery: Discovery;
  let secrets: Record<string, string>;

  before(async () => {
    dir = await tempDir('issuer');
    issuer = await startIssuer({ port: 0, dataDir: dir.path });
    const response = await fetch(`${issuer.issuer}/.well-known/openid-configuration`);
    assert.equal(response.status, 200);
    discovery = (await response.json()) as Discovery;
    secrets = await loadClientSecrets(dir.path);
  });
  after(async () => {
    await issuer.close();
    await dir.remove();
  });

  it('serves a Keycloak-shaped discovery document with the real port', () => {
    const port = issuer.port;
    assert.notEqual(port, 0);
    assert.equal(issuer.issuer, `http://127.0.0.1:${port}/realms/ca-a2a`);
    assert.equal(discovery.issuer, issuer.issuer);
    assert.equal(discovery.jwks_uri, `${issuer.issuer}/protocol/openid-connect/certs`);
    assert.equal(discovery.token_endpoint, `${issuer.issuer}/protocol/openid-connect/token`);
    assert.deepEqual(discovery.grant_types_supported, ['client_credentials']);
    assert.deepEqual([...discovery.token_endpoint_auth_methods_supported].sort(), ['client_secret_basic', 'client_secret_post']);
    assert.ok(discovery.dpop_signing_alg_values_supported.includes('ES256'));
  });

  it('answers 404 outside the realm path', async () => {
    const origin = new URL(issuer.issuer).origin;
    for (const path of ['/.well-known/openid-configuration', '/realms/ca-a2ax/.well-known/openid-configuration', '/realms/other']) {
      assert.equal((await fetch(`${origin}${path}`)).status, 404, path);
    }
  });

  it('answers 404 to the endpoints it does not serve (login, logout, userinfo…) and sets no cookie', async () => {
    const paths = [
      '/protocol/openid-connect/auth?client_id=viewer&response_type=none',
      '/protocol/openid-connect/logout',
      '/protocol/openid-connect/userinfo',
      '/protocol/openid-connect/token/introspect',
      '/protocol/openid-connect/revoke',
    ];
    for (const path of paths) {
      for (const method of ['GET', 'POST']) {
        const response = await fetch(`${issuer.issuer}${path}`, { method, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: method === 'POST' ? 'logout=yes' : undefined });
        await response.arrayBuffer();
        assert.equal(response.status, 404, `${method} ${path}`);
        assert.equal(response.headers.get('set-cookie'), null, `${method} ${path}`);
      }
    }
    assert.equal((discovery as unknown as Record<string, unknown>)['end_session_endpoint'], undefined);
  });

  it('issues every client an RS256 token that verifies against the JWKS with its roles, azp, sub, jti and a 300 s lifetime', async () => {
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    for (const [clientId, roles] of Object.entries(DEV_CLIENTS)) {
      const secret = secrets[clientId];
      assert.ok(secret !== undefined, clientId);
      const { status, body } = await rawTokenRequest(discovery.token_endpoint, clientId, secret, 'basic');
      assert.equal(status, 200, clientId);
      assert.equal(body['token_type'], 'Bearer');
      assert.equal(body['expires_in'], 300);
      const { payload, protectedHeader } = await jwtVerify(String(body['access_token']), jwks, {
        issuer: issuer.issuer,
        audience: 'ca-a2a-agents',
        algorithms: ['RS256'],
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      });
      assert.equal(protectedHeader.alg, 'RS256');
      assert.equal(payload.azp, clientId);
      assert.equal(payload.sub, `service-account-${clientId}`);
      assert.deepEqual(payload['realm_access'], { roles: [...roles] });
      assert.equal(typeof payload.jti, 'string');
      assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300);
      assert.equal(payload.cnf, undefined);
    }
  });

  it('accepts client_secret_post as well as client_secret_basic and gives each token its own jti', async () => {
    const secret = secrets['viewer'] ?? '';
    const basic = await rawTokenRequest(discovery.token_endpoint, 'viewer', secret, 'basic');
    const post = await rawTokenRequest(discovery.token_endpoint, 'viewer', secret, 'post');
    assert.equal(post.status, 200);
    assert.notEqual(decodeJwt(String(basic.body['access_token'])).jti, decodeJwt(String(post.body['access_token'])).jti);
  });

  it('refuses a wrong secret and an unknown client with 401 invalid_client', async () => {
    const wrong = await rawTokenRequest(discovery.token_endpoint, 'viewer', 'not-the-secret', 'basic');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body['error'], 'invalid_client');
    const unknown = await rawTokenRequest(discovery.token_endpoint, 'nobody', 'whatever', 'post');
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body['error'], 'invalid_client');
  });

  it('writes the client secrets and the signing key with mode 0600 in a 0700 directory', async () => {
    assert.equal((await stat(dir.path)).mode & 0o777, 0o700);
    // A directory of its own, made by the issuer: 0700 whatever the umask.
    const made = join(dir.path, 'made-here');
    await ensurePrivateDir(made);
    assert.equal((await stat(made)).mode & 0o777, 0o700);
    // One that existed, possibly shared (--data-dir .): its mode is left alone, the files are 0600.
    const shared = join(dir.path, 'shared');
    await mkdir(shared, { mode: 0o755 });
    await chmod(shared, 0o755);
    await ensureClientSecrets(shared);
    assert.equal((await stat(shared)).mode & 0o777, 0o755);
    assert.equal((await stat(clientSecretsPath(shared))).mode & 0o777, 0o600);
    assert.equal((await stat(clientSecretsPath(dir.path))).mode & 0o777, 0o600);
    assert.equal((await stat(signingKeyPath(dir.path))).mode & 0o777, 0o600);
    assert.deepEqual(Object.keys(secrets).sort(), Object.keys(DEV_CLIENTS).sort());
  });
});

describe('dev issuer restart', () => {
  it('keeps client secrets and signing key, so a token from before the restart still verifies', async () => {
    const dir = await tempDir('restart');
    const first = await startIssuer({ port: 0, dataDir: dir.path });
    let second: DevIssuer | undefined;
    try {
      const secretsBefore = await loadClientSecrets(dir.path);
      const tokenEndpoint = `${first.issuer}/protocol/openid-connect/token`;
      const { body } = await rawTokenRequest(tokenEndpoint, 'admin', secretsBefore['admin'] ?? '', 'basic');
      await first.close();

      second = await startIssuer({ port: first.port, dataDir: dir.path });
      assert.equal(second.issuer, first.issuer);
      assert.deepEqual(await loadClientSecrets(dir.path), secretsBefore);
      const jwks = createRemoteJWKSet(new URL(`${second.issuer}/protocol/openid-connect/certs`));
      const { payload } = await jwtVerify(String(body['access_token']), jwks, {
        issuer: second.issuer,
        audience: 'ca-a2a-agents',
        algorithms: ['RS256'],
      });
      assert.equal(payload.azp, 'admin');
      const again = await rawTokenRequest(tokenEndpoint, 'admin', secretsBefore['admin'] ?? '', 'post');
      assert.equal(again.status, 200);
    } finally {
      await first.close();
      await second?.close();
      await dir.remove();
    }
  });

  it('close() also closes connections that are mid-request, not only idle keep-alive ones', { timeout: 4000 }, async () => {
    const dir = await tempDir('close');
    const issuer = await startIssuer({ port: 0, dataDir: dir.path });
    try {
      // A client that sent half its headers: server.close() alone would wait for headersTimeout.
      const socket = net.connect(issuer.port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write('GET /realms/ca-a2a/.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n');
      // The server resets the connection: that is the expected outcome, not a test failure
      // (events.once would reject on the 'error' that precedes 'close').
      socket.on('error', () => {});
      const closed = new Promise((resolve) => socket.once('close', resolve));
      await issuer.close();
      await closed;
      assert.equal(socket.destroyed, true);
    } finally {
      await issuer.close();
      await dir.remove();
    }
  });
});

describe('dev issuer data directory trouble', () => {
  it('refuses to start on a dangling symbolic link in place of a data file, naming it, instead of retrying forever', async () => {
    for (const fileOf of [clientSecretsPath, signingKeyPath]) {
      const dir = await tempDir('dangling');
      try {
        await symlink(join(dir.path, 'nowhere.json'), fileOf(dir.path));
        await assert.rejects(startIssuer({ port: 0, dataDir: dir.path }), (err: Error) => {
          assert.ok(err.message.includes(fileOf(dir.path)), err.message);
          assert.match(err.message, /symbolic link/);
          return true;
        });
      } finally {
        await dir.remove();
      }
    }
  });

  it('refuses to start with a signing key that cannot sign verifiable tokens, naming the file, and leaves it in place', async () => {
    const dir = await tempDir('bad-key');
    try {
      await ensureClientSecrets(dir.path);
      const first = await startIssuer({ port: 0, dataDir: dir.path });
      await first.close();
      const key = JSON.parse(await readFile(signingKeyPath(dir.path), 'utf8')) as Record<string, string>;
      const broken = [
        { ...key, n: (key['n'] ?? '').slice(0, 40) },
        { ...key, n: `${(key['n'] ?? '').slice(0, -4)}AAAA` },
        { ...key, p: undefined },
      ];
      for (const variant of broken) {
        const text = JSON.stringify(variant);
        await writeFile(signingKeyPath(dir.path), text, { mode: 0o600 });
        await assert.rejects(startIssuer({ port: 0, dataDir: dir.path }), (err: Error) => {
          assert.ok(err.message.includes(signingKeyPath(dir.path)), err.message);
          return true;
        });
        assert.equal(await readFile(signingKeyPath(dir.path), 'utf8'), text, 'the key file is not replaced behind the operator\'s back');
      }
    } finally {
      await dir.remove();
    }
  });
});
