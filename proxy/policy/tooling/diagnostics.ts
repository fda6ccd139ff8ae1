import { relative } from 'node:path';
import type { PolicyProblem } from '../errors.js';

export type Severity = 'error' | 'warning';

/** One finding of `policy check`, positioned like a compiler message. */
export interface Diagnostic {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly severity: Severity;
  /** Stable rule id (docs/policy.md lists them), e.g. unknown-method. */
  readonly rule: string;
  readonly message: string;
}

/** Load problems carry no rule id; recognise the few kinds the loader reports. */
export function fromProblem(problem: PolicyProblem): Diagnostic {
  const text = problem.message;
  const rule = /schema does not compile/.test(text) ? 'schema-compile'
    : /would expose a JSON-RPC endpoint/.test(text) ? 'public-route-exposes-rpc'
      : /unique|duplicate/i.test(text) ? 'duplicate-key'
        : /^(file not found|cannot read)\b/.test(text) ? 'file-not-found'
          : /^file too large|^nested more than/.test(text) ? 'file-limit'
            : /^pattern '.*' is refused: /s.test(text) ? 'unsafe-pattern'
              : problem.path === '' ? 'yaml-syntax' : 'schema';
  const message = problem.path && problem.path !== '/' ? `${problem.path}: ${text}` : text;
  return { file: problem.file, line: problem.line, column: problem.column, severity: 'error', rule, message };
}

/** Sorted by file and position; the same finding reached twice (an rbac file shared by services) once. */
export function normalise(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  const seen = new Map<string, Diagnostic>();
  for (const d of diagnostics) seen.set(`${d.file}:${d.line}:${d.column}:${d.rule}:${d.message}`, d);
  return [...seen.values()].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule));
}

/** `file:line:col: severity rule: message`, the shape editors and CI annotators parse. */
export function formatDiagnostic(d: Diagnostic, cwd = process.cwd()): string {
  return `${displayPath(d.file, cwd)}:${d.line}:${d.column}: ${d.severity} ${d.rule}: ${d.message}`;
}

/** Paths relative to the working directory when inside it: shorter, and clickable in terminals. */
export function displayPath(file: string, cwd = process.cwd()): string {
  const rel = relative(cwd, file);
  return rel.startsWith('..') || rel === '' ? file : rel;
}
