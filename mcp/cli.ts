import { parseArgs } from 'node:util';
import { MAX_OBJECT_BYTES_LIMIT, startMcpGateway } from './gateway.js';
import type { McpGatewayOptions } from './gateway.js';
import { DEFAULT_KEY_POLICY, keyPolicy } from './object-keys.js';
import { flagOrEnv } from '../proxy/cli-options.js';
import type { FlagOrEnv } from '../proxy/cli-options.js';
import { parseListen } from '../proxy/listen.js';
import { stopSignal } from '../proxy/stop-signal.js';

const USAGE =
  'usage: ca-a2a mcp-gateway [--listen HOST:PORT] [--data-dir DIR] [--db-per-caller N] [--db-per-caller-wait-ms MS] [--db-reserved N] [--s3-upload-timeout-seconds S]';

const HELP = `${USAGE}

The MCP resource gateway: the only component with database and bucket credentials. Run it on
127.0.0.1 behind its sidecar (ca-a2a sidecar --service mcp).

  --listen HOST:PORT  where it listens (CA_A2A_LISTEN; default 127.0.0.1:9000)
  --data-dir DIR      embedded database (DIR/pglite) and local bucket (DIR/bucket) when the
                      variables below are unset (CA_A2A_DATA_DIR; default ./.ca-a2a)
  --db-per-caller N   database statements one caller (the client id its sidecar verified; calls
                      without one share one bucket) may run at once; one over that waits for one
                      of the caller's own to end, else answers 429 caller_busy
                      (CA_A2A_DB_PER_CALLER; default 5, half the pool of 10; 1 on the embedded
                      database)
  --db-per-caller-wait-ms MS
                      how long it waits at most (CA_A2A_DB_PER_CALLER_WAIT_MS; default 5000, the
                      pool's connection timeout)
  --db-reserved N     pooled connections a caller's second and later statements may not take,
                      kept for callers with nothing in flight, so several callers flooding at
                      once cannot take the whole pool (CA_A2A_DB_RESERVED; 0 to less than the
                      pool; default 2, a fifth of the pool of 10; unused on the embedded database)
  --s3-upload-timeout-seconds S
                      how long each try of an upload (s3_put_object) may take before it is given
                      up, in place of the 10 s of other backend calls: an upload's time grows
                      with its size and the link (CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS; 1 to 3600;
                      default 30, a 10 MiB object at 2.8 Mbit/s; the sidecar's
                      limits.upstream_timeout_ms and the caller's own timeout bound it too)

environment:
  DATABASE_URL                 PostgreSQL of the documents (else the embedded database)
  CA_A2A_S3_BUCKET             S3 bucket of the documents (else the local bucket)
  CA_A2A_S3_ENDPOINT           an S3-compatible endpoint (MinIO); unset: AWS
  AWS_REGION                   the bucket's region (default us-east-1)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                               static credentials; unset: the AWS default chain (task role)
  CA_A2A_S3_PREFIXES           the folders the S3 tools may touch, comma-separated, each ending
                               in / (default uploads/,archive/)
  CA_A2A_S3_MAX_OBJECT_BYTES   largest object read or written (1 to 268435456; default 10485760);
                               request bodies are capped at 4/3 of it plus 64 KiB
`;

/** The command's flags that a variable can set too; a flag given wins over its variable. */
export interface GatewayFlags {
  'db-per-caller'?: string;
  'db-per-caller-wait-ms'?: string;
  'db-reserved'?: string;
  's3-upload-timeout-seconds'?: string;
}

/**
 * Gateway options from the environment: DATABASE_URL; CA_A2A_S3_BUCKET, CA_A2A_S3_ENDPOINT,
 * AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; CA_A2A_S3_PREFIXES (comma-separated),
 * CA_A2A_S3_MAX_OBJECT_BYTES; CA_A2A_DB_PER_CALLER, CA_A2A_DB_PER_CALLER_WAIT_MS, CA_A2A_DB_RESERVED and
 * CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS, unless `flags` give them. Unset variables leave the embedded defaults.
 */
export function gatewayOptionsFromEnv(env: NodeJS.ProcessEnv, flags: GatewayFlags = {}): McpGatewayOptions {
  const prefixes = env.CA_A2A_S3_PREFIXES?.split(',').map((p) => p.trim()).filter(Boolean);
  if (prefixes?.length) {
    try {
      keyPolicy(prefixes, DEFAULT_KEY_POLICY.maxKeyLength);
    } catch (err) {
      throw new Error(`CA_A2A_S3_PREFIXES: ${(err as Error).message}`);
    }
  }
  const maxObjectVariable = env.CA_A2A_S3_MAX_OBJECT_BYTES;
  const maxObject = wholeNumber(maxObjectVariable ? { value: maxObjectVariable, name: 'CA_A2A_S3_MAX_OBJECT_BYTES' } : undefined, 1, MAX_OBJECT_BYTES_LIMIT);
  const uploadTimeoutSeconds = wholeNumber(flagOrEnv('--s3-upload-timeout-seconds', flags['s3-upload-timeout-seconds'], 'CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS', env), 1, MAX_UPLOAD_TIMEOUT_SECONDS);
  return {
    databaseUrl: env.DATABASE_URL || undefined,
    perCaller: {
      maxStatements: positiveInteger(flagOrEnv('--db-per-caller', flags['db-per-caller'], 'CA_A2A_DB_PER_CALLER', env)),
      maxWaitMs: positiveInteger(flagOrEnv('--db-per-caller-wait-ms', flags['db-per-caller-wait-ms'], 'CA_A2A_DB_PER_CALLER_WAIT_MS', env)),
      reservedConnections: wholeNumber(flagOrEnv('--db-reserved', flags['db-reserved'], 'CA_A2A_DB_RESERVED', env), 0),
    },
    s3: {
      bucket: env.CA_A2A_S3_BUCKET || undefined,
      endpoint: env.CA_A2A_S3_ENDPOINT || undefined,
      region: env.AWS_REGION || undefined,
      accessKeyId: env.AWS_ACCESS_KEY_ID || undefined,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY || undefined,
      allowedPrefixes: prefixes?.length ? prefixes : undefined,
      maxObjectBytes: maxObject,
      uploadTimeoutMs: uploadTimeoutSeconds === undefined ? undefined : uploadTimeoutSeconds * 1000,
    },
  };
}

/** An hour: a longer bound would outlast every caller's wait; Node also fires a timer past 2^31 ms at once. */
const MAX_UPLOAD_TIMEOUT_SECONDS = 3600;

/** A positive integer from a flag or variable; undefined when neither is set; throws naming the one that was. */
function positiveInteger(option: FlagOrEnv<string> | undefined): number | undefined {
  return wholeNumber(option, 1);
}

/** An integer of at least `least` (0 or 1), and at most `most` when given, from a flag or variable, as {@link positiveInteger}. */
function wholeNumber(option: FlagOrEnv<string> | undefined, least: 0 | 1, most?: number): number | undefined {
  if (option === undefined) return undefined;
  const value = Number(option.value);
  const whole = /^[0-9]+$/u.test(option.value.trim()) && Number.isSafeInteger(value);
  if (most !== undefined && !(whole && value >= least && value <= most)) {
    throw new Error(`${option.name} must be an integer from ${least} to ${most}, got '${option.value}'`);
  }
  if (!(whole && value >= least)) {
    throw new Error(`${option.name} must be a ${least === 1 ? 'positive' : 'non-negative'} integer, got '${option.value}'`);
  }
  return value;
}

/** `ca-a2a mcp-gateway`: runs the gateway until SIGINT or SIGTERM, then closes it; resolves the exit code. */
export async function mcpGatewayCommand(argv: string[]): Promise<number> {
  let listen: { host: string; port: number };
  let dataDir: string;
  let envOptions: McpGatewayOptions;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        'data-dir': { type: 'string' },
        'db-per-caller': { type: 'string' },
        'db-per-caller-wait-ms': { type: 'string' },
        'db-reserved': { type: 'string' },
        's3-upload-timeout-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    const listenOption = flagOrEnv('--listen', values.listen, 'CA_A2A_LISTEN') ?? { value: '127.0.0.1:9000', name: '--listen' };
    listen = parseListen(listenOption.value, listenOption.name);
    dataDir = values['data-dir'] ?? (process.env.CA_A2A_DATA_DIR || '.ca-a2a');
    envOptions = gatewayOptionsFromEnv(process.env, values);
  } catch (err) {
    process.stderr.write(`ca-a2a mcp-gateway: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const stopping = stopSignal();
  let gateway;
  try {
    gateway = await startMcpGateway({ ...envOptions, ...listen, dataDir });
  } catch (err) {
    process.stderr.write(`ca-a2a mcp-gateway: cannot start: ${describeError(err)}\n`);
    return 1;
  }
  const signal = await stopping;
  gateway.logger.info({ event_type: 'mcp_gateway_stopping', signal }, 'stopping');
  await gateway.close();
  return 0;
}

/** A readable cause, also for Node's AggregateError (several addresses refused), whose message is empty. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const inner = (err as { errors?: unknown[] }).errors?.[0];
  return err.message || (inner instanceof Error ? inner.message : '') || String((err as { code?: unknown }).code ?? 'unknown error');
}
