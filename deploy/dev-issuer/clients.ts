import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createJsonExclusive, ensurePrivateDir, readJsonIfExists, replaceJson, tightenFileMode } from './files.js';

/**
 * The development issuer's clients and the realm roles each one's tokens carry. Every client is a
 * confidential client_credentials client whose only role is its own name; the Keycloak realm file
 * declares the same set (a test keeps them in step).
 */
export const DEV_CLIENTS = Object.freeze({
  orchestrator: Object.freeze(['orchestrator']),
  extractor: Object.freeze(['extractor']),
  validator: Object.freeze(['validator']),
  archivist: Object.freeze(['archivist']),
  lambda: Object.freeze(['lambda']),
  admin: Object.freeze(['admin']),
  viewer: Object.freeze(['viewer']),
  'document-processor': Object.freeze(['document-processor']),
} as const);

/** A client id the dev issuer knows. */
export type DevClientId = keyof typeof DEV_CLIENTS;

/** Narrows a string to a known dev client id. */
export function isDevClient(name: string): name is DevClientId {
  return Object.hasOwn(DEV_CLIENTS, name);
}

/** `CA_A2A_DATA_DIR` (when not empty), else `.ca-a2a` under the current directory (where `npm start` runs). */
export function defaultDataDir(): string {
  const fromEnv = process.env['CA_A2A_DATA_DIR'];
  return fromEnv === undefined || fromEnv === '' ? path.join(process.cwd(), '.ca-a2a') : fromEnv;
}

/** Path of the client secrets file inside a data directory. */
export function clientSecretsPath(dataDir: string): string {
  return path.join(dataDir, 'client-secrets.json');
}

/**
 * Returns the client secrets for every dev client, generating the missing ones (256 random bits,
 * base64url) into `<dataDir>/client-secrets.json` (file 0600; the directory 0700 if made here). Existing secrets are
 * kept so that running clients and scripts keep working across issuer restarts.
 */
export async function ensureClientSecrets(dataDir: string): Promise<Record<string, string>> {
  await ensurePrivateDir(dataDir);
  const file = clientSecretsPath(dataDir);
  const existing = await readJsonIfExists(file);
  if (existing === undefined) {
    const fresh = generateSecrets({});
    // Lost the race to a concurrent start: use what the other process wrote.
    if (!(await createJsonExclusive(file, fresh))) return ensureClientSecrets(dataDir);
    return fresh;
  }
  const secrets = parseSecrets(existing, file);
  await tightenFileMode(file);
  const complete = generateSecrets(secrets);
  if (Object.keys(complete).length !== Object.keys(secrets).length) await replaceJson(file, complete);
  return complete;
}

/**
 * Reads the client secrets the dev issuer wrote. Throws an error naming the file when it is
 * missing, since the usual cause is that the issuer (or `npm start`) has not run yet.
 */
export async function loadClientSecrets(dataDir: string): Promise<Record<string, string>> {
  const file = clientSecretsPath(dataDir);
  const content = await readJsonIfExists(file);
  if (content === undefined) {
    throw new Error(
      `no client secrets at ${file}: start the development issuer first (\`npx ca-a2a issuer\` or \`npm start\`), ` +
        'or point CA_A2A_DATA_DIR / --data-dir at its data directory',
    );
  }
  return parseSecrets(content, file);
}

function generateSecrets(existing: Record<string, string>): Record<string, string> {
  const secrets: Record<string, string> = { ...existing };
  for (const clientId of Object.keys(DEV_CLIENTS)) {
    secrets[clientId] ??= randomBytes(32).toString('base64url');
  }
  return secrets;
}

function parseSecrets(content: unknown, file: string): Record<string, string> {
  if (typeof content !== 'object' || content === null || Array.isArray(content)) {
    throw new Error(`${file} must hold a JSON object of client id → secret`);
  }
  // No prototype: a client id such as 'toString' or '__proto__' must not find an inherited value.
  const secrets: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [clientId, secret] of Object.entries(content)) {
    if (typeof secret !== 'string' || secret.length < 16) {
      throw new Error(`${file}: the secret of client '${clientId}' must be a string of at least 16 characters`);
    }
    secrets[clientId] = secret;
  }
  return secrets;
}
