import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { DEFAULT_PORTS, EPHEMERAL_PORTS, offsetPorts } from './ports.js';
import { logFileFor } from './stack.js';
import { up } from './up.js';
import { stopSignal } from '../stop-signal.js';

const USAGE = `usage: ca-a2a up [--data-dir DIR] [--port-offset N | --ephemeral-ports] [--no-samples]

Runs the whole system on this machine until Ctrl-C: the development issuer (:8080), the MCP gateway
behind its sidecar (:8000), the four agents behind theirs (:8001-8004) and the admin API (:8005);
then sends the sample documents of examples/documents through the pipeline and prints a summary.
  --data-dir DIR      secrets, database, bucket and logs (CA_A2A_DATA_DIR; default ./.ca-a2a)
  --port-offset N     shift every port by N (a second stack beside the first, with its own --data-dir)
  --ephemeral-ports   let the system pick every port (tests)
  --no-samples        start only
REDIS_URL, DATABASE_URL and CA_A2A_S3_BUCKET (+ CA_A2A_S3_ENDPOINT, AWS_*) select real backends;
CA_A2A_KEY_PREFIX (default ca-a2a) keeps a second stack's Redis keys apart from the first's.`;

/** `ca-a2a up`: 0 after a clean shutdown, 1 when the system could not start, 2 on a usage error. */
export async function upCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        'data-dir': { type: 'string', default: process.env['CA_A2A_DATA_DIR'] || '.ca-a2a' },
        'port-offset': { type: 'string' },
        'ephemeral-ports': { type: 'boolean' },
        'no-samples': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`ca-a2a up: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const offset = values['port-offset'] === undefined ? 0 : Number(values['port-offset']);
  if (!Number.isInteger(offset) || offset < 0 || offset > 50_000) {
    process.stderr.write(`ca-a2a up: --port-offset must be an integer 0..50000\n`);
    return 2;
  }
  const ports = values['ephemeral-ports'] ? EPHEMERAL_PORTS : offset === 0 ? DEFAULT_PORTS : offsetPorts(offset);
  const dataDir = values['data-dir'];
  const logFile = logFileFor(dataDir);
  let logFd: number;
  try {
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
    // Opened here, not by pino: its asynchronous open reports a failure as an unhandled 'error' event.
    logFd = openSync(logFile, 'a', 0o600);
  } catch (error) {
    process.stderr.write(`ca-a2a up: cannot write the log file in the data directory: ${(error as Error).message}\n`);
    return 1;
  }
  const logDestination = pino.destination({ fd: logFd, sync: false });
  const progress = (line: string) => process.stdout.write(`• ${line}\n`);
  const stopping = stopSignal();
  // Ctrl-C while starting is answered at once: the components finish starting (so that each is
  // then closed properly), the samples not yet sent are skipped, and the stack stops.
  const startAborted = new AbortController();
  let starting = true;
  void stopping.then((signal) => {
    if (starting) progress(`${signal}: stopping once the components have started`);
    startAborted.abort();
  });
  progress(`starting ca-a2a (logs: ${logFile})`);

  let result;
  try {
    result = await up({ dataDir, ports, env: process.env, logDestination, progress, samplesDir: values['no-samples'] ? null : undefined, signal: startAborted.signal });
  } catch (error) {
    process.stderr.write(`ca-a2a up: ${(error as Error).message}${portTakenHint(error)}\n`);
    return 1;
  } finally {
    starting = false;
  }
  const stoppedWhileStarting = startAborted.signal.aborted;
  if (!stoppedWhileStarting) process.stdout.write(result.summary);
  const signal = await stopping;
  if (!stoppedWhileStarting) progress(`${signal}: stopping`);
  await result.stack.close();
  logDestination.flushSync();
  progress('stopped');
  return 0;
}

/** A port taken is most often a `ca-a2a up` already running (a second `npm start`): say how to run beside it. */
function portTakenHint(error: unknown): string {
  if ((error as { code?: unknown }).code !== 'EADDRINUSE') return '';
  return ' (another ca-a2a up? stop it, or run this one beside it with --port-offset 200 and a --data-dir of its own)';
}
