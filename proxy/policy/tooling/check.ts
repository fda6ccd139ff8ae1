import { dirname, resolve } from 'node:path';
import { isPolicyLoadError } from '../errors.js';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';
import { validatePolicyFile } from '../validate-file.js';
import { readYamlSource } from '../yaml-source.js';
import { discoverPolicyFiles } from './discover.js';
import { displayPath, formatDiagnostic, fromProblem, normalise, type Diagnostic } from './diagnostics.js';
import { parseCommandArgs, pickFormat, processIo, usageError, type Io } from './io.js';
import { lintRbac } from './lint-rbac.js';
import { lintService } from './lint-service.js';
import { loadRolesOnly } from './load-roles.js';

export interface CheckResult {
  readonly files: readonly string[];
  readonly diagnostics: readonly Diagnostic[];
  readonly errors: number;
  readonly warnings: number;
  /** The service policies that loaded, for commands that go on to use them. */
  readonly services: readonly ServicePolicy[];
}

/**
 * Schema validation through the real loader (so `check` and the sidecar can never disagree on
 * what loads), then the semantic rules of lint-rbac.ts and lint-service.ts.
 */
export function checkPolicies(paths: readonly string[]): CheckResult {
  const found = discoverPolicyFiles(paths);
  const diagnostics: Diagnostic[] = [...found.diagnostics];
  const services: ServicePolicy[] = [];
  // An rbac file used by a service that did not load: what is served is unknown, so the rules
  // that need it would report every grant of that service's methods as unknown.
  const incomplete = new Set<string>();
  for (const file of found.services) {
    try {
      const policy = loadPolicy(file);
      services.push(policy);
      diagnostics.push(...lintService(policy, readYamlSource(file)));
    } catch (error) {
      if (!isPolicyLoadError(error)) throw error;
      diagnostics.push(...error.problems.map(fromProblem));
      const rbac = rbacOf(file);
      if (rbac !== undefined) incomplete.add(rbac);
    }
  }
  for (const file of found.rbacs) {
    const source = readYamlSource(file);
    const problems = validatePolicyFile('rbac', source);
    if (problems.length > 0) {
      diagnostics.push(...problems.map(fromProblem));
      continue;
    }
    const users = rbacUsers(file, services, found.services, incomplete);
    if (users.length === 0) {
      // Nobody compiled its argument schemas yet.
      try {
        loadRolesOnly(file);
      } catch (error) {
        if (!isPolicyLoadError(error)) throw error;
        diagnostics.push(...error.problems.filter((problem) => problem.file === file).map(fromProblem));
        continue;
      }
    }
    diagnostics.push(...lintRbac(source, incomplete.has(file) ? [] : users));
  }
  const sorted = normalise(diagnostics);
  return {
    files: [...found.services, ...found.rbacs].sort(),
    diagnostics: sorted,
    errors: sorted.filter((d) => d.severity === 'error').length,
    warnings: sorted.filter((d) => d.severity === 'warning').length,
    services,
  };
}

/**
 * The services an rbac file is linted against: every one that uses it, checked or found under the
 * rbac file's directory. Against the checked ones only, `check services/x.yaml` (the file a
 * pre-commit hook passes) reported each grant of another service's methods as unknown, and
 * `check rbac.yaml` alone skipped the rules that need what is served: a misspelt deny passed.
 * A user that does not load marks the file incomplete, as one checked does.
 */
function rbacUsers(file: string, checked: readonly ServicePolicy[], checkedFiles: readonly string[], incomplete: Set<string>): ServicePolicy[] {
  const users = checked.filter((policy) => policy.files[1] === file);
  for (const other of discoverPolicyFiles([dirname(file)]).services) {
    if (checkedFiles.includes(other) || rbacOf(other) !== file) continue;
    try {
      users.push(loadPolicy(other));
    } catch (error) {
      if (!isPolicyLoadError(error)) throw error;
      incomplete.add(file);
    }
  }
  return users;
}

/** The rbac file a service policy names, resolved; undefined when it names none. */
function rbacOf(serviceFile: string): string | undefined {
  const rbac = (readYamlSource(serviceFile).data as { rbac?: unknown } | undefined)?.rbac;
  return typeof rbac === 'string' ? resolve(dirname(serviceFile), rbac) : undefined;
}

const HELP = `usage: ca-a2a policy check [FILE|DIR...] [--strict] [--format text|json]

Validates policy files (default: policies/) against the JSON Schema and lints them:
misspelt methods, tools and roles, roles that allow nothing, denies that never apply,
allows shadowed by a deny, methods without a params schema, unreachable methods and tools.
Prints file:line:column: severity rule: message. Exit 1 on any error (and on warnings
with --strict), 0 otherwise.
`;

export async function checkCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, { strict: { type: 'boolean' }, format: { type: 'string' } }, HELP, io, 'check');
  if ('exit' in args) return args.exit;
  const format = pickFormat(args.values.format, ['text', 'json'] as const, 'text');
  if (!format) return usageError(io, 'check', `unknown format '${String(args.values.format)}'`, HELP);
  const paths = args.positionals.length > 0 ? args.positionals : ['policies'];
  const result = checkPolicies(paths);
  const failed = result.errors > 0 || (args.values.strict === true && result.warnings > 0);
  if (format === 'json') {
    io.out(`${JSON.stringify({
      ok: !failed,
      errors: result.errors,
      warnings: result.warnings,
      files: result.files.map((file) => displayPath(file)),
      diagnostics: result.diagnostics.map((d) => ({ ...d, file: displayPath(d.file) })),
    }, null, 2)}\n`);
  } else {
    for (const d of result.diagnostics) io.out(`${formatDiagnostic(d)}\n`);
    const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
    io.out(`${failed ? 'FAIL' : 'ok'}: ${plural(result.files.length, 'file')} checked (${paths.map((p) => displayPath(resolve(p))).join(', ')}), ${plural(result.errors, 'error')}, ${plural(result.warnings, 'warning')}\n`);
  }
  return failed ? 1 : 0;
}
