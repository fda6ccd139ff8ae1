import { flagOrEnv } from '../proxy/cli-options.js';
import { DEFAULT_MAX_PDFS } from './extractor/pdf-admission.js';
import { DEFAULT_MAX_DOCUMENTS } from './shared/document-slots.js';
import { DEFAULT_STALE_AFTER_SECONDS, DEFAULT_SWEEP_INTERVAL_MS, STEP_SHARE_OF_STALE_WINDOW, type OrchestratorOptions } from './orchestrator/orchestrator.js';
import { DEFAULT_BUSY_RETRY } from './orchestrator/step-call.js';
import { DEFAULT_SWEEP_BATCH } from './orchestrator/sweep.js';
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_RETRY, DEFAULT_TOOL_TIMEOUT_MS } from './shared/egress-client.js';
import { AGENT_NAMES, type AgentName } from './registry.js';

/** A whole-number setting of `ca-a2a agent`, for some agents only. */
interface NumberSetting {
  readonly variable: string;
  readonly agents: readonly AgentName[];
  readonly min: number;
  readonly max: number;
  /** What the usage line calls the value. */
  readonly unit: 'N' | 'SECONDS';
  readonly help: string;
  /** Why the flag makes no sense on another agent; none for a setting of every agent. */
  readonly elsewhere?: (agent: AgentName) => string;
}

/**
 * The numeric settings of `ca-a2a agent`, by flag. A flag given to an agent that has no such
 * setting stops the start (a typo in a task definition must not pass unseen); the variable may be
 * set for every agent of a deployment and is read only by the agents it names.
 */
export const NUMBER_SETTINGS = {
  'tool-timeout-seconds': {
    variable: 'CA_A2A_TOOL_TIMEOUT_SECONDS', agents: AGENT_NAMES, min: 1, max: 86_400, unit: 'SECONDS',
    help: `every agent: how long one MCP tool call may take, its answer read whole, before the agent gives up on it (default ${DEFAULT_TOOL_TIMEOUT_MS / 1000}); for uploads past 30 s raise it with the gateway's --s3-upload-timeout-seconds and the sidecars' timeouts`,
  },
  'max-pdfs': {
    variable: 'CA_A2A_MAX_PDFS', agents: ['extractor'], min: 1, max: 999_999, unit: 'N',
    help: `extractor only: PDFs held at once, waiting for the reader or being read (default ${DEFAULT_MAX_PDFS}); past it extract_document answers busy`,
    elsewhere: (agent) => `--max-pdfs is the extractor's; ${agent} reads no PDFs`,
  },
  'max-documents': {
    variable: 'CA_A2A_MAX_DOCUMENTS', agents: ['extractor', 'validator', 'archivist'], min: 1, max: 999_999, unit: 'N',
    help: `extractor (other than PDFs), validator and archivist: documents held at once, from the read of the stored file to the step's answer (default ${DEFAULT_MAX_DOCUMENTS}); past it the step answers busy`,
    elsewhere: (agent) => `--max-documents is the step agents'; ${agent} holds no stored file`,
  },
  'stale-after-seconds': {
    // At least 2: the step timeout, at least 1, must be below it.
    variable: 'CA_A2A_STALE_AFTER_SECONDS', agents: ['orchestrator'], min: 2, max: 86_400, unit: 'SECONDS',
    help: `orchestrator only: a run that showed no progress for this long is taken over by the stale sweep or a process_document; above the step timeout and the busy wait (default ${DEFAULT_STALE_AFTER_SECONDS})`,
    elsewhere: (agent) => `--stale-after-seconds is the orchestrator's; ${agent} runs no pipeline`,
  },
  'sweep-interval-seconds': {
    variable: 'CA_A2A_SWEEP_INTERVAL_SECONDS', agents: ['orchestrator'], min: 0, max: 86_400, unit: 'SECONDS',
    help: `orchestrator only: how often the stale sweep runs, 0 for never (default ${DEFAULT_SWEEP_INTERVAL_MS / 1000})`,
    elsewhere: (agent) => `--sweep-interval-seconds is the orchestrator's; ${agent} runs no pipeline`,
  },
  'sweep-batch': {
    variable: 'CA_A2A_SWEEP_BATCH', agents: ['orchestrator'], min: 1, max: 999_999, unit: 'N',
    help: `orchestrator only: most stalled documents one sweep takes over, one after another; the next sweep takes the rest (default ${DEFAULT_SWEEP_BATCH})`,
    elsewhere: (agent) => `--sweep-batch is the orchestrator's; ${agent} runs no pipeline`,
  },
  'step-attempts': {
    variable: 'CA_A2A_STEP_ATTEMPTS', agents: ['orchestrator'], min: 1, max: 20, unit: 'N',
    help: `orchestrator only: attempts of a step whose hop failed (agent down, 502/503/504), 0.25 s doubled up to 4 s apart, before the step fails (default ${DEFAULT_RETRY.attempts})`,
    elsewhere: (agent) => `--step-attempts is the orchestrator's; ${agent} runs no pipeline`,
  },
  'step-timeout-seconds': {
    variable: 'CA_A2A_STEP_TIMEOUT_SECONDS', agents: ['orchestrator'], min: 1, max: 86_400, unit: 'SECONDS',
    help: `orchestrator only: how long one attempt of a step (extract_document, validate_document, archive_document) may take, its answer read whole, before it counts as a failed hop; below nine tenths of the stale window, the step's deadline (default ${DEFAULT_CALL_TIMEOUT_MS / 1000}); a step runs several tool calls, each within the step agent's --tool-timeout-seconds: raise this with it, and --stale-after-seconds above this`,
    elsewhere: (agent) => `--step-timeout-seconds is the orchestrator's; ${agent} runs no pipeline`,
  },
  'busy-wait-seconds': {
    variable: 'CA_A2A_BUSY_WAIT_SECONDS', agents: ['orchestrator'], min: 0, max: 86_399, unit: 'SECONDS',
    help: `orchestrator only: how long a step asks a busy agent again before the document is left in flight for the stale sweep; below the stale window (default ${DEFAULT_BUSY_RETRY.maxWaitMs / 1000}, at most a quarter of the window)`,
    elsewhere: (agent) => `--busy-wait-seconds is the orchestrator's; ${agent} runs no pipeline`,
  },
} as const satisfies Record<string, NumberSetting>;

/** A flag of {@link NUMBER_SETTINGS}. */
export type NumberFlag = keyof typeof NUMBER_SETTINGS;

/** The `parseArgs` options of {@link NUMBER_SETTINGS}, each a string read by {@link readNumberSettings}. */
export const NUMBER_FLAG_OPTIONS = Object.fromEntries(Object.keys(NUMBER_SETTINGS).map((flag) => [flag, { type: 'string' as const }])) as Record<NumberFlag, { type: 'string' }>;

/** Words of `text` on lines of at most `width` characters, each after `indent`. */
function wrap(text: string, indent: number, width = 100): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

/** The usage lines of the settings. */
export function numberSettingsUsage(): string {
  return Object.entries(NUMBER_SETTINGS).map(([flag, setting]: [string, NumberSetting]) => {
    const [first, ...rest] = wrap(`${setting.help} (${setting.variable}; ${setting.min} to ${setting.max})`, 22);
    const head = `  --${flag} ${setting.unit}`;
    // A long flag gets its text on the next line.
    const lines = head.length < 22 ? [`${head.padEnd(22)}${first ?? ''}`] : [head, `${' '.repeat(22)}${first ?? ''}`];
    return [...lines, ...rest.map((line) => `${' '.repeat(22)}${line}`)].join('\n');
  }).join('\n');
}

/**
 * The settings `agent` was given, by flag, or a message naming the flag or variable that is wrong.
 * Values must be whole decimal numbers in range, written plainly (no sign, exponent or fraction).
 */
export function readNumberSettings(agent: AgentName, given: Partial<Record<NumberFlag, string>>, env: NodeJS.ProcessEnv = process.env): { settings: Partial<Record<NumberFlag, number>> } | { error: string } {
  const settings: Partial<Record<NumberFlag, number>> = {};
  for (const [flag, setting] of Object.entries(NUMBER_SETTINGS) as [NumberFlag, NumberSetting][]) {
    const option = flagOrEnv(`--${flag}`, given[flag], setting.variable, env);
    if (option === undefined) continue;
    if (!setting.agents.includes(agent)) {
      if (option.name.startsWith('--')) return { error: setting.elsewhere?.(agent) ?? `--${flag} is not ${agent}'s` };
      continue;
    }
    const value = /^\d{1,9}$/.test(option.value) ? Number(option.value) : NaN;
    if (!(value >= setting.min && value <= setting.max)) {
      return { error: `${option.name} must be a whole number from ${setting.min} to ${setting.max}, not '${option.value.slice(0, 40)}'` };
    }
    settings[flag] = value;
  }
  return { settings };
}

/**
 * The orchestrator's options from its settings, or a message naming what is wrong. Each bound on a
 * run's silence must be below the stale window, or a live run is taken over as stalled: a busy wait
 * (a run waiting on a busy agent writes nothing), and one attempt of a step (the step agent writes
 * only once its work is done), which must also fit in the step's deadline (nine tenths of it). Without a busy wait, the orchestrator's default applies (30 s, at
 * most a quarter of the window); the step timeout's default (90 s) is compared as given.
 */
export function orchestratorOptions(settings: Partial<Record<NumberFlag, number>>, given: Partial<Record<NumberFlag, string>>, env: NodeJS.ProcessEnv = process.env): { options: Omit<OrchestratorOptions, 'egress' | 'logger' | 'onRunFinished'> } | { error: string } {
  const staleAfter = settings['stale-after-seconds'];
  const busyWait = settings['busy-wait-seconds'];
  const stepTimeout = settings['step-timeout-seconds'];
  const window = staleAfter ?? DEFAULT_STALE_AFTER_SECONDS;
  // Where a value came from, as the operator wrote it, or the default it fell back to.
  const source = (flag: NumberFlag, fallback: number) => {
    const option = flagOrEnv(`--${flag}`, given[flag], NUMBER_SETTINGS[flag].variable, env);
    return option === undefined ? `the default ${fallback}` : `${option.name} ${option.value}`;
  };
  if (busyWait !== undefined && busyWait >= window) {
    return {
      error: `the busy wait (${source('busy-wait-seconds', busyWait)}) must be below the stale window (${source('stale-after-seconds', window)}): a run waiting on a busy agent would be taken over as stalled`,
    };
  }
  const step = stepTimeout ?? DEFAULT_CALL_TIMEOUT_MS / 1000;
  // A step is cut at its deadline, nine tenths of the window after its last progress: an attempt
  // allowed longer would be cut before its own timeout, a bound the operator set and never gets.
  if (step >= window * STEP_SHARE_OF_STALE_WINDOW) {
    return {
      error: `the step timeout (${source('step-timeout-seconds', step)}) must be below nine tenths of the stale window (${source('stale-after-seconds', window)}): a step is cut at that point, so its document is not taken over by another orchestrator while it is being worked on`,
    };
  }
  const sweepInterval = settings['sweep-interval-seconds'];
  const sweepBatch = settings['sweep-batch'];
  const attempts = settings['step-attempts'];
  return {
    options: {
      ...(staleAfter === undefined ? {} : { staleAfterSeconds: staleAfter }),
      ...(busyWait === undefined ? {} : { busyRetry: { ...DEFAULT_BUSY_RETRY, maxWaitMs: busyWait * 1000 } }),
      ...(sweepInterval === undefined ? {} : { sweepIntervalMs: sweepInterval * 1000 }),
      ...(sweepBatch === undefined ? {} : { sweepBatch }),
      ...(attempts === undefined ? {} : { retry: { ...DEFAULT_RETRY, attempts } }),
    },
  };
}
