import { processIo, type Io } from './tooling/io.js';

type PolicySubcommand = (argv: string[], io?: Io) => Promise<number>;

// Loaded on demand: `policy docs` should not pay for the loader, nor `check` for the docs.
const SUBCOMMANDS: Record<string, { readonly summary: string; readonly load: () => Promise<PolicySubcommand> }> = {
  check: { summary: 'validate and lint policy files (file:line:col diagnostics)', load: async () => (await import('./tooling/check.js')).checkCommand },
  explain: { summary: 'the decision for roles × method/tool and the rule (file:line) that made it', load: async () => (await import('./tooling/explain.js')).explainCommand },
  matrix: { summary: 'the access matrix (methods and tools × roles) of one or every service', load: async () => (await import('./tooling/matrix-command.js')).matrixCommand },
  diff: { summary: 'what a policy change grants or takes away (per role, and every section of a service)', load: async () => (await import('./tooling/diff.js')).diffCommand },
  test: { summary: 'run the policy test cases (default policies/tests)', load: async () => (await import('./tooling/test-runner.js')).testCommand },
  docs: { summary: 'print (or --write) the field reference generated from the JSON Schemas', load: async () => (await import('./tooling/docs.js')).docsCommand },
};

function usage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((name) => name.length));
  const lines = Object.entries(SUBCOMMANDS).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return ['usage: ca-a2a policy <command> [options]', '', 'commands:', ...lines, '', 'ca-a2a policy <command> --help for its options.', ''].join('\n');
}

/** `ca-a2a policy <check|explain|matrix|diff|test|docs>`. */
export async function policyCommand(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(`ca-a2a policy: give a command\n\n${usage()}`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return 0;
  }
  // Own names only: 'toString' or '__proto__' would find Object.prototype's, and crash.
  const entry = Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
  if (!entry) {
    io.err(`ca-a2a policy: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return (await entry.load())(rest, io);
}
