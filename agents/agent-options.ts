import { flagOrEnv } from '../proxy/cli-options.js';
import { DEFAULT_MAX_PDFS } from './extractor/pdf-admission.js';
import { DEFAULT_MAX_DOCUMENTS } from './shared/document-slots.js';
import type { AgentName } from './registry.js';

/** A whole-number setting of `ca-a2a agent`, for some agents only. */
interface NumberSetting {
  readonly variable: string;
  readonly agents: readonly AgentName[];
  readonly min: number;
  readonly max: number;
  readonly help: string;
  /** Why the flag makes no sense on another agent. */
  readonly elsewhere: (agent: AgentName) => string;
}

/**
 * The numeric settings of `ca-a2a agent`, by flag. A flag given to an agent that has no such
 * setting stops the start (a typo in a task definition must not pass unseen); the variable may be
 * set for every agent of a deployment and is read only by the agents it names.
 */
export const NUMBER_SETTINGS = {
  'max-pdfs': {
    variable: 'CA_A2A_MAX_PDFS', agents: ['extractor'], min: 1, max: 999_999,
    help: `extractor only: PDFs held at once, waiting for the reader or being read (default ${DEFAULT_MAX_PDFS}); past it extract_document answers busy`,
    elsewhere: (agent) => `--max-pdfs is the extractor's; ${agent} reads no PDFs`,
  },
  'max-documents': {
    variable: 'CA_A2A_MAX_DOCUMENTS', agents: ['validator', 'archivist'], min: 1, max: 999_999,
    help: `validator and archivist: documents held at once, from the read of the stored file to the step's answer (default ${DEFAULT_MAX_DOCUMENTS}); past it the step answers busy`,
    elsewhere: (agent) => `--max-documents is the validator's and the archivist's; ${agent} ${agent === 'extractor' ? 'has --max-pdfs' : 'holds no stored file'}`,
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
    return [`${`  --${flag} N`.padEnd(22)}${first ?? ''}`, ...rest.map((line) => `${' '.repeat(22)}${line}`)].join('\n');
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
      if (option.name.startsWith('--')) return { error: setting.elsewhere(agent) };
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
