/** One problem found in a policy file, with where it is. */
export interface PolicyProblem {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** JSON-pointer-like path inside the document, e.g. /auth/issuer. */
  readonly path: string;
  readonly message: string;
}

/** Thrown by loadPolicy() with every problem found; nothing of the file is applied. */
export class PolicyLoadError extends Error {
  readonly code = 'POLICY_INVALID';
  readonly problems: readonly PolicyProblem[];
  /**
   * Every file the load read or looked for, found or not: a watcher watches their directories,
   * so creating the missing one (a $ref schema, the rbac file) causes the next reload.
   */
  readonly files: readonly string[];

  constructor(problems: readonly PolicyProblem[], files: readonly string[] = []) {
    super(`policy invalid:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'PolicyLoadError';
    this.problems = problems;
    this.files = files;
  }
}

export function formatProblem(problem: PolicyProblem): string {
  const where = `${problem.file}:${problem.line}:${problem.column}`;
  return problem.path ? `${where} ${problem.path}: ${problem.message}` : `${where} ${problem.message}`;
}

export function isPolicyLoadError(error: unknown): error is PolicyLoadError {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'POLICY_INVALID';
}
