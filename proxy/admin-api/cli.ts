import { parseArgs } from 'node:util';
import { flagOrEnv } from '../cli-options.js';
import { isLoopbackListen } from '../listen.js';
import { storeOptionsFromEnv } from '../stores/backends.js';
import { startAdminApi } from './start.js';
import { stopSignal } from '../stop-signal.js';

const HELP = `usage: ca-a2a admin-api [--listen HOST:PORT]

  --listen HOST:PORT   where to listen (CA_A2A_LISTEN; default 127.0.0.1:9005), a loopback
                       address only: the admin sidecar (ca-a2a sidecar --service admin) is its only door.

Routes: POST /admin/revoke-token {"jti","reason"[,"expires_at"]}, POST /admin/revoke-subject
{"subject","reason"}, POST /admin/revoke-before {"before","reason"}, GET /admin/revocations,
POST /message (JSON-RPC revoke_token, revoke_subject, revoke_before, list_revocations), GET /health.
Environment: DATABASE_URL (durable store), REDIS_URL (push to sidecars); unset: the embedded
journal CA_A2A_DATA_DIR/revocations.jsonl (default ./.ca-a2a), which every sidecar on that
directory watches and reloads. CA_A2A_KEY_PREFIX: the deployment's Redis key prefix (default
ca-a2a), the same as its sidecars'.
`;

/** `ca-a2a admin-api`: runs until SIGINT/SIGTERM. */
export async function adminApiCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        // Read below (flagOrEnv): a bad address is reported under the name it came from.
        listen: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`ca-a2a admin-api: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const listen = flagOrEnv('--listen', values.listen, 'CA_A2A_LISTEN') ?? { value: '127.0.0.1:9005', name: '--listen' };
  let usage: string | undefined;
  try {
    if (!isLoopbackListen(listen.value, listen.name)) usage = `${listen.name} must be a loopback address, not '${listen.value}': the admin sidecar is the admin API's only door`;
  } catch (error) {
    usage = (error as Error).message;
  }
  if (usage !== undefined) {
    process.stderr.write(`ca-a2a admin-api: ${usage}\n`);
    return 2;
  }
  const stopping = stopSignal();
  let api;
  try {
    api = await startAdminApi({ listen: listen.value, stores: storeOptionsFromEnv() });
  } catch (error) {
    process.stderr.write(`ca-a2a admin-api: ${(error as Error).message}\n`);
    return 1;
  }
  await stopping;
  await api.close();
  return 0;
}
