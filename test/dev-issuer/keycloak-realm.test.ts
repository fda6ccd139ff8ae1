import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { DEV_CLIENTS, loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../deploy/dev-issuer/issuer.js';
import { AUDIENCE, REALM_NAME } from '../../deploy/dev-issuer/realm.js';
import { rawTokenRequest, tempDir } from './helpers.js';

/** The parts of a Keycloak RealmRepresentation this test reads. */
interface Mapper {
  protocolMapper: string;
  config: Record<string, string>;
}
interface RealmExport {
  realm: string;
  enabled: boolean;
  accessTokenLifespan: number;
  bruteForceProtected: boolean;
  revokeRefreshToken: boolean;
  refreshTokenMaxReuse: number;
  defaultSignatureAlgorithm: string;
  roles: { realm: { name: string }[] };
  clientScopes: { name: string; protocolMappers: Mapper[] }[];
  clients: {
    clientId: string;
    secret: string;
    publicClient: boolean;
    serviceAccountsEnabled: boolean;
    standardFlowEnabled: boolean;
    implicitFlowEnabled: boolean;
    directAccessGrantsEnabled: boolean;
    defaultClientScopes: string[];
    attributes: Record<string, string>;
  }[];
  users: { username: string; serviceAccountClientId?: string; realmRoles: string[] }[];
}

const SEED_ROLES = ['admin', 'lambda', 'orchestrator', 'document-processor', 'viewer', 'extractor', 'validator', 'archivist'];

describe('deploy/keycloak/realm-ca-a2a.json matches the dev issuer', () => {
  let realm: RealmExport;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let issuer: DevIssuer;

  before(async () => {
    realm = JSON.parse(await readFile(new URL('../../deploy/keycloak/realm-ca-a2a.json', import.meta.url), 'utf8')) as RealmExport;
    dir = await tempDir('realm');
    issuer = await startIssuer({ port: 0, dataDir: dir.path });
  });
  after(async () => {
    await issuer.close();
    await dir.remove();
  });

  it('declares the same realm, clients and per-client roles as the issuer puts in its tokens', async () => {
    assert.equal(realm.realm, REALM_NAME);
    assert.ok(issuer.issuer.endsWith(`/realms/${realm.realm}`));
    assert.deepEqual(realm.clients.map((c) => c.clientId).sort(), Object.keys(DEV_CLIENTS).sort());
    const secrets = await loadClientSecrets(dir.path);
    const tokenEndpoint = `${issuer.issuer}/protocol/openid-connect/token`;
    for (const client of realm.clients) {
      const serviceAccount = realm.users.find((u) => u.serviceAccountClientId === client.clientId);
      assert.ok(serviceAccount, `no service account user for ${client.clientId}`);
      assert.equal(serviceAccount.username, `service-account-${client.clientId}`);
      const { body } = await rawTokenRequest(tokenEndpoint, client.clientId, secrets[client.clientId] ?? '', 'basic');
      const claims = decodeJwt(String(body['access_token']));
      assert.deepEqual(claims['realm_access'], { roles: serviceAccount.realmRoles }, client.clientId);
      assert.equal(claims['preferred_username'], serviceAccount.username);
    }
  });

  it('has the same audience and lifetime, RS256, realm roles in realm_access.roles', async () => {
    const { body } = await rawTokenRequest(
      `${issuer.issuer}/protocol/openid-connect/token`,
      'viewer',
      (await loadClientSecrets(dir.path))['viewer'] ?? '',
      'post',
    );
    const claims = decodeJwt(String(body['access_token']));
    assert.equal(realm.accessTokenLifespan, (claims.exp ?? 0) - (claims.iat ?? 0));
    assert.equal(realm.defaultSignatureAlgorithm, 'RS256');
    for (const client of realm.clients) {
      const mappers = realm.clientScopes.filter((s) => client.defaultClientScopes.includes(s.name)).flatMap((s) => s.protocolMappers);
      const audiences = mappers.filter((m) => m.protocolMapper === 'oidc-audience-mapper').map((m) => m.config['included.custom.audience']);
      assert.deepEqual(audiences, [AUDIENCE], client.clientId);
      assert.equal(claims.aud, AUDIENCE);
      const roles = mappers.find((m) => m.protocolMapper === 'oidc-usermodel-realm-role-mapper');
      assert.equal(roles?.config['claim.name'], 'realm_access.roles');
      assert.equal(roles?.config['access.token.claim'], 'true');
      assert.equal(client.attributes['access.token.signed.response.alg'], 'RS256');
    }
  });

  it('makes every client a confidential service-account client with DPoP binding and no browser flows', () => {
    for (const client of realm.clients) {
      assert.equal(client.publicClient, false, client.clientId);
      assert.equal(client.serviceAccountsEnabled, true, client.clientId);
      assert.equal(client.standardFlowEnabled || client.implicitFlowEnabled || client.directAccessGrantsEnabled, false, client.clientId);
      assert.equal(client.attributes['dpop.bound.access.tokens'], 'true', client.clientId);
    }
  });

  it('holds no real secret: each client secret is an environment placeholder', () => {
    for (const client of realm.clients) {
      assert.match(client.secret, /^\$\{CA_A2A_CLIENT_SECRET_[A-Z_]+\}$/, client.clientId);
    }
  });

  it('keeps the seed roles and the hardening settings', () => {
    const roles = new Set(realm.roles.realm.map((r) => r.name));
    for (const role of SEED_ROLES) assert.ok(roles.has(role), role);
    assert.equal(realm.enabled, true);
    assert.equal(realm.bruteForceProtected, true);
    assert.equal(realm.revokeRefreshToken, true);
    assert.equal(realm.refreshTokenMaxReuse, 0);
  });
});
