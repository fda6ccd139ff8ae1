import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { CLIENTS } from '../../deploy/cdk/data.js';

const repoFile = (relative: string): string => readFileSync(fileURLToPath(new URL(`../../${relative}`, import.meta.url)), 'utf8');

interface Realm {
  defaultRole: { name: string };
  roles: { realm: Array<{ name: string; composite: boolean }> };
  clients: Array<{ clientId: string }>;
  users: Array<{ serviceAccountClientId?: string; realmRoles: string[] }>;
}

describe('deploy/keycloak/realm-ca-a2a.json against policies/rbac.yaml and deploy/cdk', () => {
  const realm = JSON.parse(repoFile('deploy/keycloak/realm-ca-a2a.json')) as Realm;
  const rbacRoles = Object.keys((parse(repoFile('policies/rbac.yaml')) as { roles: Record<string, unknown> }).roles).sort();

  it('defines exactly the roles rbac.yaml grants, beside an empty, non-composite default role', () => {
    const roles = realm.roles.realm.filter((role) => role.name !== realm.defaultRole.name);
    assert.deepEqual(roles.map((role) => role.name).sort(), rbacRoles);
    assert.deepEqual(realm.roles.realm.filter((role) => role.composite).map((role) => role.name), [], 'a composite role would put roles in tokens that no client was given');
  });

  it('gives each client\'s service account one role, a role rbac.yaml knows', () => {
    for (const client of realm.clients) {
      const account = realm.users.filter((user) => user.serviceAccountClientId === client.clientId);
      assert.equal(account.length, 1, client.clientId);
      assert.equal(account[0]?.realmRoles.length, 1, client.clientId);
      assert.ok(rbacRoles.includes(account[0]?.realmRoles[0] ?? ''), client.clientId);
    }
  });

  it('has a client for every client secret the stack generates, and no other', () => {
    assert.deepEqual(realm.clients.map((client) => client.clientId).sort(), [...CLIENTS].sort());
  });
});
