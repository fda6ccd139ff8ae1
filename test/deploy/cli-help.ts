/** What `ca-a2a <command> --help` says, the reference the deploy tests hold compose and the task definitions to. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/ca-a2a.js', import.meta.url));
const cache = new Map<string, string>();

/** The help text of one command (sidecar, agent, mcp-gateway, admin-api), read once. */
export function helpOf(command: string): string {
  const known = cache.get(command);
  if (known !== undefined) return known;
  const text = execFileSync(process.execPath, [CLI, command, '--help'], { encoding: 'utf8' });
  cache.set(command, text);
  return text;
}

/** Variables every Node process reads, not ca-a2a's: the help texts do not name them. */
const NODE_VARIABLES = new Set(['NODE_ENV']);

/**
 * The flags in `args` and the variable names in `variables` that the command's help does not
 * name: each is something the command would ignore, or refuse, at start.
 */
export function unknownToCommand(command: string, args: readonly string[], variables: readonly string[]): string[] {
  const help = helpOf(command);
  const named = (word: string): boolean => new RegExp(`(^|[^A-Za-z0-9_-])${word}([^A-Za-z0-9_-]|$)`).test(help);
  return [
    ...args.filter((arg) => arg.startsWith('--') && !named(arg)),
    ...variables.filter((name) => !NODE_VARIABLES.has(name) && !named(name)),
  ];
}
