import type { DestinationStream } from 'pino';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { createRpcClient } from './rpc-client.js';
import { demonstrateRefusal, runSamples, type Refusal, type SampleOutcome } from './run-samples.js';
import { loadSamples, SAMPLES_DIR } from './samples.js';
import { startStack, type Stack, type StackOptions } from './stack.js';
import { formatSummary } from './summary.js';
import type { StackPorts } from './ports.js';

/** Options of {@link up}. */
export interface UpOptions {
  readonly dataDir: string;
  readonly ports: StackPorts;
  readonly env: NodeJS.ProcessEnv;
  readonly logDestination: DestinationStream;
  readonly progress: (line: string) => void;
  /** Default examples/documents; `null` skips the samples. */
  readonly samplesDir?: string | null;
  readonly orchestrator?: StackOptions['orchestrator'];
  /** Aborted (Ctrl-C while starting): the stack still starts whole, but no further sample is sent. */
  readonly signal?: AbortSignal;
}

/** A running system with what happened to the samples. */
export interface UpResult {
  readonly stack: Stack;
  readonly outcomes: readonly SampleOutcome[];
  readonly refusal: Refusal | undefined;
  readonly summary: string;
}

/**
 * `ca-a2a up` as a function: starts the whole system, sends the samples through the orchestrator
 * as the `lambda` client (real tokens, DPoP, every hop through a sidecar), asks the policy to
 * refuse one call, and returns the summary. The caller owns `stack.close()`.
 */
export async function up(opts: UpOptions): Promise<UpResult> {
  const stack = await startStack(opts);
  const stopping = (): boolean => opts.signal?.aborted === true;
  try {
    let outcomes: SampleOutcome[] = [];
    let refusal: Refusal | undefined;
    if (opts.samplesDir !== null && !stopping()) {
      const secrets = await loadClientSecrets(stack.dataDir);
      const client = (clientId: string) => createRpcClient({ issuer: stack.issuer, clientId, clientSecret: secrets[clientId] ?? '' });
      const [lambda, admin, viewer] = await Promise.all([client('lambda'), client('admin'), client('viewer')]);
      const orchestrator = stack.sidecars.orchestrator ?? '';
      const archivist = stack.sidecars.archivist ?? '';
      const samples = await loadSamples(opts.samplesDir ?? SAMPLES_DIR);
      opts.progress(`samples         ${samples.length} in ${opts.samplesDir ?? SAMPLES_DIR}`);
      outcomes = await runSamples(samples, { orchestrator, archivist }, { submitter: lambda, reader: admin }, (line) => opts.progress(`  ${line}`), opts.signal);
      const target = outcomes.find((o) => o.documentId !== undefined)?.documentId;
      if (target !== undefined && !stopping()) refusal = await demonstrateRefusal(viewer, orchestrator, 'process_document', { document_id: target });
    }
    const services = Object.fromEntries(Object.entries(stack.sidecars).map(([name, url]) => [name, url]));
    return { stack, outcomes, refusal, summary: formatSummary(outcomes, refusal, { issuer: stack.issuer, services, dataDir: stack.dataDir }) };
  } catch (error) {
    await stack.close();
    throw error;
  }
}
