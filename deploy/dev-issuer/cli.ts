import { parseArgs, type ParseArgsConfig } from 'node:util';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { badHttpUrl, envSwitch, flagOrEnv } from '../../proxy/cli-options.js';
import { parseListen } from '../../proxy/listen.js';
import { createTokenSource } from '../../proxy/oauth/client-credentials.js';
import { stopSignal } from '../../proxy/stop-signal.js';
import { clientSecretsPath, defaultDataDir, loadClientSecrets } from './clients.js';
import { startIssuer } from './issuer.js';
import { DEFAULT_ISSUER_URL, DEFAULT_LISTEN } from './realm.js';

const ISSUER_USAGE = `usage: ca-a2a issuer [--listen HOST:PORT] [--data-dir DIR]

Runs the development OIDC issuer (Keycloak-shaped, realm ca-a2a) until SIGINT or SIGTERM.
  --listen HOST:PORT  address to bind (env CA_A2A_ISSUER_LISTEN; default ${DEFAULT_LISTEN.host}:${DEFAULT_LISTEN.port})
  --data-dir DIR      client secrets and signing key (env CA_A2A_DATA_DIR; default ./.ca-a2a)`;

const TOKEN_USAGE = `usage: ca-a2a token --client NAME [--issuer URL] [--data-dir DIR] [--allow-http-issuer] [--decode]

Prints an access token for NAME (client_credentials), e.g. TOKEN=$(npx ca-a2a token --client viewer)
  --client NAME     the client, e.g. viewer, orchestrator, admin
  --issuer URL      issuer URL (env CA_A2A_ISSUER; default ${DEFAULT_ISSUER_URL})
  --data-dir DIR    where the issuer wrote client-secrets.json (env CA_A2A_DATA_DIR; default ./.ca-a2a)
  --allow-http-issuer  a plain-http issuer off this host, e.g. one listening on 0.0.0.0
                    (CA_A2A_ALLOW_HTTP_ISSUER=1; else https, or http on loopback)
  --decode          print the token's decoded header and claims as JSON instead of the token`;

/** `ca-a2a issuer`: runs the dev issuer until SIGINT/SIGTERM, then closes it and resolves 0. */
export async function issuerCommand(argv: string[]): Promise<number> {
  const args = parse(argv, { listen: { type: 'string' }, 'data-dir': { type: 'string' } }, 'issuer', ISSUER_USAGE);
  if (typeof args === 'number') return args;
  const listenOption = flagOrEnv('--listen', stringOption(args, 'listen'), 'CA_A2A_ISSUER_LISTEN');
  let listen;
  try {
    listen = listenOption === undefined ? DEFAULT_LISTEN : parseListen(listenOption.value, listenOption.name);
  } catch (error) {
    return usageError('issuer', messageOf(error), ISSUER_USAGE);
  }
  const dataDir = stringOption(args, 'data-dir') ?? defaultDataDir();

  const stopping = stopSignal();
  let issuer;
  try {
    issuer = await startIssuer({ ...listen, dataDir });
  } catch (err) {
    process.stderr.write(`ca-a2a issuer: cannot start on ${listen.host}:${listen.port}: ${messageOf(err)}\n`);
    return 1;
  }
  process.stdout.write(`ca-a2a issuer: ${issuer.issuer} (client secrets in ${clientSecretsPath(dataDir)})\n`);
  await stopping;
  await issuer.close();
  return 0;
}

/** `ca-a2a token`: prints only the access token on stdout; 1 on failure, 2 on a usage error. */
export async function tokenCommand(argv: string[]): Promise<number> {
  const options = {
    client: { type: 'string' },
    issuer: { type: 'string' },
    'data-dir': { type: 'string' },
    'allow-http-issuer': { type: 'boolean' },
    decode: { type: 'boolean' },
  } as const;
  const args = parse(argv, options, 'token', TOKEN_USAGE);
  if (typeof args === 'number') return args;
  const clientId = stringOption(args, 'client');
  if (clientId === undefined || clientId === '') return usageError('token', '--client is required', TOKEN_USAGE);
  const issuer = flagOrEnv('--issuer', stringOption(args, 'issuer'), 'CA_A2A_ISSUER');
  const notUrl = badHttpUrl([issuer]);
  if (notUrl !== undefined) return usageError('token', notUrl, TOKEN_USAGE);
  // A flag given wins; else the variable, which must read as on or off (as for the sidecar).
  const allowPlainHttp = args.values['allow-http-issuer'] === true || envSwitch('CA_A2A_ALLOW_HTTP_ISSUER');
  if (typeof allowPlainHttp === 'string') return usageError('token', allowPlainHttp, TOKEN_USAGE);
  const issuerUrl = issuer?.value ?? DEFAULT_ISSUER_URL;
  const dataDir = stringOption(args, 'data-dir') ?? defaultDataDir();

  try {
    const secrets = await loadClientSecrets(dataDir);
    const clientSecret = secrets[clientId];
    if (clientSecret === undefined) {
      return fail(`unknown client '${clientId}' (known: ${Object.keys(secrets).sort().join(', ')})`);
    }
    const { accessToken } = await createTokenSource({ issuer: issuerUrl, clientId, clientSecret, allowPlainHttp }).getToken();
    const output = args.values['decode'] === true
      ? JSON.stringify({ header: decodeProtectedHeader(accessToken), payload: decodeJwt(accessToken) }, null, 2)
      : accessToken;
    process.stdout.write(`${output}\n`);
    return 0;
  } catch (err) {
    const hint = errorCode(err) === 'ISSUER_UNREACHABLE' ? ' (is the issuer running? `npx ca-a2a issuer` or `npm start`)' : '';
    return fail(`${messageOf(err)}${hint}`);
  }
}

type Parsed = ReturnType<typeof parseArgs>;

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, command: string, usage: string): Parsed | number {
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (err) {
    return usageError(command, messageOf(err), usage);
  }
  if (parsed.values['help'] === true) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  return parsed;
}

function stringOption(args: Parsed, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

function usageError(command: string, message: string, usage: string): number {
  process.stderr.write(`ca-a2a ${command}: ${message}\n\n${usage}\n`);
  return 2;
}

function fail(message: string): number {
  process.stderr.write(`ca-a2a token: ${message}\n`);
  return 1;
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
