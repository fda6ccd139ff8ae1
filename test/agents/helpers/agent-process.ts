import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const BIN = new URL('../../../bin/ca-a2a.js', import.meta.url).pathname;
/** How much of the child's stderr a failure quotes: its last lines say why it stopped. */
const STDERR_TAIL = 2000;

/** A `ca-a2a agent` child that logged `agent_started`. */
export interface AgentProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** The settings its start line names. */
  readonly settings: unknown;
  /** The last {@link STDERR_TAIL} characters of its stderr so far. */
  stderr(): string;
}

/**
 * Starts `ca-a2a agent ARGS`; resolves once it logs `agent_started`. A child that exits first (a
 * bad flag, a port in use) rejects at once with its exit code and the tail of its stderr, so a
 * test says why instead of only that the agent did not start.
 */
export async function startAgentProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<AgentProcess> {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  // Read for the child's whole life: a pipe nobody reads would stop it once full.
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL);
  });
  const started = await new Promise<{ url?: unknown; settings?: unknown }>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry: { event_type?: unknown; url?: unknown; settings?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.event_type === 'agent_started') resolve(entry);
    });
    child.once('error', reject);
    // 'close' comes once its stdio has ended too, so the tail is all it wrote.
    child.once('close', (code, signal) => {
      const how = code === null ? `on ${signal ?? 'a signal'}` : `with code ${code}`;
      reject(new Error(`ca-a2a agent ${args.join(' ')} exited ${how} before it listened: ${stderr.trimEnd() || '(nothing on stderr)'}`));
    });
  });
  if (typeof started.url !== 'string') {
    child.kill('SIGKILL');
    throw new Error(`ca-a2a agent ${args.join(' ')} logged agent_started without a url`);
  }
  return { child, url: started.url, settings: started.settings, stderr: () => stderr };
}

/**
 * Runs `ca-a2a agent ARGS` to its exit: status and stderr. An agent that starts instead of refusing
 * is killed as soon as it logs its start line (code null), so a refusal that regressed fails at once
 * rather than leaving the test waiting on an agent that runs until stopped.
 */
export async function agentExit(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.includes('"agent_started"')) child.kill('SIGKILL');
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}
