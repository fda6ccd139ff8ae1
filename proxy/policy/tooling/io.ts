import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Where a command writes: the process by default, a buffer in tests. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/** A buffer Io for tests and for callers that want the text. */
export function bufferIo(): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out(text: string) { io.stdout += text; },
    err(text: string) { io.stderr += text; },
  };
  return io;
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly positionals: readonly string[];
}

/**
 * parseArgs with --help, or a usage error (exit 2) written to io; one naming the argument for a
 * command that takes no positional arguments and is given one.
 */
export function parseCommandArgs(argv: string[], options: Options, help: string, io: Io, command: string, allowPositionals = true): ParsedArgs | { readonly exit: number } {
  try {
    const parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
    if (parsed.values.help) {
      io.out(help);
      return { exit: 0 };
    }
    return { values: parsed.values, positionals: parsed.positionals };
  } catch (error) {
    io.err(`ca-a2a policy ${command}: ${(error as Error).message}\n\n${help}`);
    return { exit: 2 };
  }
}

/** A usage error: message, help, exit status 2. */
export function usageError(io: Io, command: string, message: string, help: string): number {
  io.err(`ca-a2a policy ${command}: ${message}\n\n${help}`);
  return 2;
}

export type OutputFormat = 'table' | 'json' | 'csv' | 'markdown' | 'text';

export function pickFormat<F extends OutputFormat>(value: unknown, allowed: readonly F[], fallback: F): F | undefined {
  if (value === undefined) return fallback;
  return allowed.includes(value as F) ? (value as F) : undefined;
}

/** A string option's value (parseArgs types every option as string | boolean). */
export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}
