import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';

/**
 * Compiles an rbac file on its own, through the real loader: a throwaway service that serves
 * nothing points at it. Used to check an rbac file no service references, and by `diff` to pair
 * one service's methods with another version's roles. Throws PolicyLoadError like loadPolicy.
 */
export function loadRolesOnly(rbacFile: string): ServicePolicy {
  const dir = mkdtempSync(join(tmpdir(), 'ca-a2a-roles-'));
  try {
    const file = join(dir, 'roles-only.yaml');
    writeFileSync(file, `service: roles-only\nrbac: ${JSON.stringify(resolve(rbacFile))}\nupstream: http://127.0.0.1:1\nauth: { issuer: "http://127.0.0.1:1/realms/x", audience: x }\n`);
    return loadPolicy(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The service's methods and tools with another rbac file's roles: what the service would decide under it. */
export function withRoles(policy: ServicePolicy, roles: ServicePolicy): ServicePolicy {
  return Object.freeze({ ...policy, roles: roles.roles, files: [policy.files[0] as string, ...roles.files.slice(1)] });
}
