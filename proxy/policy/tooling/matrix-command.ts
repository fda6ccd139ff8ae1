import { isPolicyLoadError, formatProblem } from '../errors.js';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';
import { displayPath } from './diagnostics.js';
import { parseCommandArgs, pickFormat, processIo, stringOption, usageError, type Io } from './io.js';
import { accessMatrix, matrixJson, type AccessMatrix, type Cell } from './matrix.js';
import { selectionConflict, servicePolicyFile, servicesUnder } from './services.js';
import { renderTable } from './table.js';

const HELP = `usage: ca-a2a policy matrix [DIR|FILE...] [--service NAME | --policy FILE] [--format table|csv|json|markdown]

The access matrix of each service: one row per method or tool, one column per role, computed
with the sidecar's own decision function.
  DIR|FILE...     every service policy under these paths (default: policies/)
  --service NAME  only the policies among them serving NAME (their service: field, as policy
                  diff pairs them); without DIR|FILE, the shipped service NAME
  --policy FILE   that service policy alone (not with DIR|FILE)
A path that holds no policy, or no policy serving NAME, is an error (exit 1).
  allow    granted            allow*  granted for arguments the role's schema accepts
  DENY     explicit deny      -       nothing grants it (deny by default)
`;

const SYMBOL: Record<Cell, string> = { allow: 'allow', 'allow-args': 'allow*', deny: 'DENY', none: '-' };

export async function matrixCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, { service: { type: 'string' }, policy: { type: 'string' }, format: { type: 'string' } }, HELP, io, 'matrix');
  if ('exit' in args) return args.exit;
  const format = pickFormat(args.values.format, ['table', 'csv', 'json', 'markdown'] as const, 'table');
  if (!format) return usageError(io, 'matrix', `unknown format '${String(args.values.format)}'`, HELP);
  const service = stringOption(args, 'service');
  const policy = stringOption(args, 'policy');
  const conflict = selectionConflict(service, policy, args.positionals);
  if (conflict !== undefined) return usageError(io, 'matrix', conflict, HELP);
  let policies: ServicePolicy[];
  try {
    policies = args.positionals.length === 0 && (service !== undefined || policy !== undefined)
      ? [loadPolicy(servicePolicyFile({ service, policy }))]
      : servicesUnder(args.positionals.length > 0 ? args.positionals : ['policies'], service);
  } catch (error) {
    io.err(`ca-a2a policy matrix: ${isPolicyLoadError(error) ? `policy invalid (run policy check):\n${error.problems.map(formatProblem).join('\n')}` : (error as Error).message}\n`);
    return 1;
  }
  const matrices = policies.map((policy) => ({ policy, matrix: accessMatrix(policy) }));
  io.out(renderMatrices(matrices, format));
  return 0;
}

/** Renders matrices in one of the output formats (also used by the docs and snapshots). */
export function renderMatrices(matrices: readonly { policy: ServicePolicy; matrix: AccessMatrix }[], format: 'table' | 'csv' | 'json' | 'markdown'): string {
  if (format === 'json') return `${JSON.stringify(matrices.map(({ matrix }) => matrixJson(matrix)), null, 2)}\n`;
  if (format === 'csv') {
    // One CSV for every service: roles differ only if the services use different rbac files.
    const roles = [...new Set(matrices.flatMap(({ matrix }) => matrix.roles))];
    const rows = matrices.flatMap(({ matrix }) => matrix.rows.map((row) => [matrix.service, row.kind, row.name, ...roles.map((role) => row.cells[role] ?? 'none')]));
    return renderTable(['service', 'kind', 'name', ...roles], rows, 'csv');
  }
  return matrices.map(({ policy, matrix }) => {
    const header = [`${matrix.service}`, ...matrix.roles];
    const rows = matrix.rows.map((row) => [row.kind === 'tool' ? `tool ${row.name}` : row.name, ...matrix.roles.map((role) => SYMBOL[row.cells[role] ?? 'none'])]);
    const title = `${matrix.service} (${displayPath(policy.files[0] ?? '')}, version ${policy.version})`;
    return format === 'markdown' ? `### ${title}\n\n${renderTable(header, rows, 'markdown')}` : `${title}\n${renderTable(header, rows, 'table')}`;
  }).join('\n') + (format === 'table' ? '\nallow* = only with arguments the role\'s schema accepts; DENY = explicit deny; - = not granted\n' : '');
}
