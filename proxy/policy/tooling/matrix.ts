import { decide } from '../decide.js';
import type { ServicePolicy } from '../model.js';

/**
 * allow: granted. allow-args: granted only for arguments the role's schema accepts.
 * deny: an explicit deny of the role. none: nothing grants it (deny by default).
 */
export type Cell = 'allow' | 'allow-args' | 'deny' | 'none';

export interface MatrixRow {
  /** 'method' rows are JSON-RPC methods; 'tool' rows are tools called through the per_tool method. */
  readonly kind: 'method' | 'tool';
  readonly name: string;
  readonly cells: Readonly<Record<string, Cell>>;
}

export interface AccessMatrix {
  readonly service: string;
  readonly roles: readonly string[];
  readonly rows: readonly MatrixRow[];
}

/**
 * What each role, held alone, may do on one service, computed with the sidecar's own decide().
 * The per_tool method (tools/call) is shown as one row per tool rather than as a method.
 */
export function accessMatrix(policy: ServicePolicy): AccessMatrix {
  const roles = [...policy.roles.keys()];
  const rows: MatrixRow[] = [];
  let perTool: string | undefined;
  for (const method of policy.methods.values()) {
    if (method.access === 'per_tool') {
      perTool ??= method.name;
      continue;
    }
    rows.push({ kind: 'method', name: method.name, cells: Object.fromEntries(roles.map((role) => [role, methodCell(policy, role, method.name)])) });
  }
  for (const tool of policy.tools.keys()) {
    rows.push({ kind: 'tool', name: tool, cells: Object.fromEntries(roles.map((role) => [role, perTool === undefined ? 'none' : toolCell(policy, role, perTool, tool)])) });
  }
  return { service: policy.service, roles, rows };
}

function methodCell(policy: ServicePolicy, role: string, method: string): Cell {
  const decision = decide(policy, [role], { method });
  if (decision.allowed) return 'allow';
  return decision.rule?.effect === 'deny' ? 'deny' : 'none';
}

function toolCell(policy: ServicePolicy, role: string, method: string, tool: string): Cell {
  const methodDecision = decide(policy, [role], { method });
  if (!methodDecision.allowed && methodDecision.code === 'authz.explicit_deny') return 'deny';
  const decision = decide(policy, [role], { method, tool });
  if (decision.allowed) return policy.roles.get(role)?.toolArguments.has(tool) ? 'allow-args' : 'allow';
  if (decision.code === 'authz.arguments_denied') return 'allow-args';
  return decision.rule?.effect === 'deny' ? 'deny' : 'none';
}

/** The matrix as plain JSON: { methods: {m: {role: cell}}, tools: {t: {role: cell}} }. */
export function matrixJson(matrix: AccessMatrix): { service: string; methods: Record<string, Record<string, Cell>>; tools: Record<string, Record<string, Cell>> } {
  const pick = (kind: MatrixRow['kind']) => Object.fromEntries(matrix.rows.filter((row) => row.kind === kind).map((row) => [row.name, { ...row.cells }]));
  return { service: matrix.service, methods: pick('method'), tools: pick('tool') };
}

/** Granted at all (with or without an argument restriction). */
export function grants(cell: Cell): boolean {
  return cell === 'allow' || cell === 'allow-args';
}
