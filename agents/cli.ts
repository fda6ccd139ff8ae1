import { parseArgs } from 'node:util';
import { badBaseUrl, flagOrEnv } from '../proxy/cli-options.js';
import { parseListen } from '../proxy/listen.js';
import { SHIPPED_SERVICES } from '../proxy/services.js';
import { NUMBER_FLAG_OPTIONS, numberSettingsUsage, orchestratorOptions, readNumberSettings } from './agent-options.js';
import { AGENT_NAMES, isAgentName, startAgent } from './registry.js';
import { stopSignal } from '../proxy/stop-signal.js';

const USAGE = `usage: ca-a2a agent NAME --egress URL [--listen HOST:PORT] [--public-url URL] [--issuer URL] [SETTINGS]

Runs one pipeline agent as a plain JSON-RPC service: ${AGENT_NAMES.join(', ')}.
Put its sidecar in front of it: the agent has no security of its own and listens on 127.0.0.1.
  --listen HOST:PORT  address (CA_A2A_LISTEN; default 127.0.0.1:<the service's upstream port>, e.g. 9001)
  --egress URL        its sidecar's egress listener (CA_A2A_EGRESS_URL), through which it calls
                      the MCP gateway and the other agents
  --public-url URL    the sidecar's /message URL, advertised in the agent card (CA_A2A_PUBLIC_URL)
  --issuer URL        the OIDC issuer advertised in the agent card (CA_A2A_ISSUER)
${numberSettingsUsage()}
A setting's variable is read only by the agents it names; its flag on another agent is refused at start (exit 2).
Each URL is http(s) without a user, query or fragment; anything else is refused at start (exit 2).`;

/** `ca-a2a agent NAME`: runs until SIGINT/SIGTERM, then closes; 2 on a usage error. */
export async function agentCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        // Read below (flagOrEnv): a bad value is reported under the name it came from.
        listen: { type: 'string' },
        egress: { type: 'string' },
        'public-url': { type: 'string' },
        issuer: { type: 'string' },
        ...NUMBER_FLAG_OPTIONS,
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    process.stderr.write(`ca-a2a agent: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const name = positionals[0];
  if (name === undefined || positionals.length !== 1 || !isAgentName(name)) {
    process.stderr.write(`ca-a2a agent: give one agent name (${AGENT_NAMES.join(', ')})\n\n${USAGE}\n`);
    return 2;
  }
  let listen;
  try {
    const listenOption = flagOrEnv('--listen', values.listen, 'CA_A2A_LISTEN') ?? { value: `127.0.0.1:${SHIPPED_SERVICES[name].upstreamPort}`, name: '--listen' };
    listen = parseListen(listenOption.value, listenOption.name);
  } catch (error) {
    process.stderr.write(`ca-a2a agent: ${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const egress = flagOrEnv('--egress', values.egress, 'CA_A2A_EGRESS_URL');
  const publicUrl = flagOrEnv('--public-url', values['public-url'], 'CA_A2A_PUBLIC_URL');
  const issuer = flagOrEnv('--issuer', values.issuer, 'CA_A2A_ISSUER');
  if (egress === undefined) {
    process.stderr.write(`ca-a2a agent: --egress URL (or CA_A2A_EGRESS_URL) is required: the agent reaches everything through its sidecar\n`);
    return 2;
  }
  const read = readNumberSettings(name, values);
  if ('error' in read) {
    process.stderr.write(`ca-a2a agent: ${read.error}\n`);
    return 2;
  }
  const { settings } = read;
  const orchestrator = name === 'orchestrator' ? orchestratorOptions(settings, values) : undefined;
  if (orchestrator !== undefined && 'error' in orchestrator) {
    process.stderr.write(`ca-a2a agent: ${orchestrator.error}\n`);
    return 2;
  }
  // Checked now: a typo would otherwise surface as the first call's obscure failure, or in the card.
  const invalid = badBaseUrl([egress, publicUrl, issuer]);
  if (invalid !== undefined) {
    process.stderr.write(`ca-a2a agent: ${invalid}\n`);
    return 2;
  }
  const stopping = stopSignal();
  let agent;
  try {
    // Its own logger, bounded and buffered as the sidecar's (a stdout nobody reads must not stop
    // the agent), each line dropped counted in its metrics.
    agent = await startAgent(name, {
      ...listen, egressUrl: egress.value, publicUrl: publicUrl?.value, issuer: issuer?.value,
      toolTimeoutMs: settings['tool-timeout-seconds'] === undefined ? undefined : settings['tool-timeout-seconds'] * 1000,
      stepTimeoutMs: settings['step-timeout-seconds'] === undefined ? undefined : settings['step-timeout-seconds'] * 1000,
      orchestrator: orchestrator?.options,
      extractor: { maxPdfs: settings['max-pdfs'], maxDocuments: settings['max-documents'] },
      validator: { maxDocuments: settings['max-documents'] },
      archivist: { maxDocuments: settings['max-documents'] },
    });
  } catch (error) {
    process.stderr.write(`ca-a2a agent: cannot start ${name}: ${(error as Error).message}\n`);
    return 1;
  }
  const signal = await stopping;
  agent.logger.info({ event_type: 'agent_stopping', signal }, 'stopping');
  await agent.close();
  return 0;
}
