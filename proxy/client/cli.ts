import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultDataDir, loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { DEFAULT_ISSUER_URL } from '../../deploy/dev-issuer/realm.js';
import { badHttpUrl, envSwitch, flagOrEnv, isHttpUrl } from '../cli-options.js';
import { isShippedService, SHIPPED_SERVICES, type ShippedService } from '../services.js';
import { createServiceClient } from './call.js';

const HELP = `usage: ca-a2a call --client NAME --service S --method M [--params JSON|@file] [options]

  --client NAME     OAuth client to call as (its secret: CA_A2A_CLIENT_SECRET, else the
                    development issuer's data directory)
  --service S       ${Object.keys(SHIPPED_SERVICES).join(', ')} (its sidecar on 127.0.0.1:<port>/message;
                    mcp: /mcp, MCP JSON-RPC such as tools/list or tools/call)
  --url URL         call this endpoint instead (e.g. https://orchestrator.example.com/message)
  --method M        JSON-RPC method
  --params JSON     params, a JSON object or array (JSON-RPC 2.0), or @file to read them
                    from a file (default {})
  --issuer URL      OIDC issuer (CA_A2A_ISSUER; default http://127.0.0.1:8080/realms/ca-a2a)
  --data-dir DIR    development issuer data directory (CA_A2A_DATA_DIR; default ./.ca-a2a)
  --allow-http-issuer  get the token from a plain-http issuer off this host, as compose's
                    http://keycloak:8080 (CA_A2A_ALLOW_HTTP_ISSUER=1; else https, or http on loopback)

Prints the JSON-RPC response. Exit 0 on a result; 1 on a JSON-RPC error or when no answer came
(issuer or service unreachable, no secret for the client, no complete answer within 30 s);
2 on bad usage.
`;

/** Where `--service S` sends its call: the sidecar's JSON-RPC endpoint (the MCP gateway's is /mcp). */
export function serviceUrl(service: ShippedService): string {
  return `http://127.0.0.1:${SHIPPED_SERVICES[service].port}${service === 'mcp' ? '/mcp' : '/message'}`;
}

/** `ca-a2a call`: one signed JSON-RPC call from outside the mesh. */
export async function callCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        client: { type: 'string' },
        service: { type: 'string' },
        url: { type: 'string' },
        method: { type: 'string' },
        params: { type: 'string', default: '{}' },
        // Read below (flagOrEnv): a bad URL is reported under the name it came from.
        issuer: { type: 'string' },
        'data-dir': { type: 'string', default: defaultDataDir() },
        'allow-http-issuer': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`ca-a2a call: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { client, service, method } = values;
  if (!client || !method || (!service && !values.url)) {
    process.stderr.write(`ca-a2a call: --client, --method and --service (or --url) are required\n\n${HELP}`);
    return 2;
  }
  if (service && !values.url && !isShippedService(service)) {
    process.stderr.write(`ca-a2a call: unknown service '${service}'; use --url for others\n`);
    return 2;
  }
  if (values.url !== undefined && !isHttpUrl(values.url)) {
    process.stderr.write(`ca-a2a call: --url must be an http:// or https:// URL, e.g. https://orchestrator.example.com/message\n`);
    return 2;
  }
  // An exported-but-empty variable means unset, as for ca-a2a token.
  const issuer = flagOrEnv('--issuer', values.issuer, 'CA_A2A_ISSUER');
  const notUrl = badHttpUrl([issuer]);
  if (notUrl !== undefined) {
    process.stderr.write(`ca-a2a call: ${notUrl}\n`);
    return 2;
  }
  // A flag given wins; else the variable, which must read as on or off (as for the sidecar).
  const allowPlainHttp = values['allow-http-issuer'] ?? envSwitch('CA_A2A_ALLOW_HTTP_ISSUER');
  if (typeof allowPlainHttp === 'string') {
    process.stderr.write(`ca-a2a call: ${allowPlainHttp}\n`);
    return 2;
  }
  let text = values.params;
  if (text.startsWith('@')) {
    try {
      text = readFileSync(text.slice(1), 'utf8');
    } catch (error) {
      // A missing or unreadable file is not a JSON error: say which file and why.
      process.stderr.write(`ca-a2a call: --params ${values.params}: cannot read the file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
      return 2;
    }
  }
  let params: unknown;
  try {
    params = JSON.parse(text);
  } catch (error) {
    process.stderr.write(`ca-a2a call: --params is not valid JSON: ${(error as Error).message}\n`);
    return 2;
  }
  // JSON-RPC 2.0 §4.2: params, when present, are an object (by name) or an array (by position).
  if (typeof params !== 'object' || params === null) {
    process.stderr.write(`ca-a2a call: --params must be a JSON object or array (JSON-RPC 2.0), got ${params === null ? 'null' : typeof params}\n`);
    return 2;
  }
  const url = values.url ?? serviceUrl(service as ShippedService);
  try {
    const secret = process.env.CA_A2A_CLIENT_SECRET || (await loadClientSecrets(values['data-dir']))[client];
    if (!secret) {
      process.stderr.write(`ca-a2a call: no secret for client '${client}' in ${values['data-dir']}\n`);
      return 1;
    }
    const caller = await createServiceClient({ issuer: issuer?.value ?? DEFAULT_ISSUER_URL, clientId: client, clientSecret: secret, allowPlainHttp });
    const outcome = await caller.call(url, method, params);
    process.stdout.write(`${JSON.stringify(outcome.response, null, 2)}\n`);
    return outcome.kind === 'result' ? 0 : 1;
  } catch (error) {
    process.stderr.write(`ca-a2a call: ${(error as Error).message}\n`);
    return 1;
  }
}
