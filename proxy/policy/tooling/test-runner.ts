import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createSchemaCompiler, describeErrors } from '../ajv.js';
import { decide, type Decision } from '../decide.js';
import { isPolicyLoadError, formatProblem } from '../errors.js';
import { evaluate } from '../evaluate.js';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';
import { readYamlSource } from '../yaml-source.js';
import { toolCall } from '../../jsonrpc/envelope.js';
import { displayPath, type Diagnostic } from './diagnostics.js';
import { parseCommandArgs, pickFormat, processIo, usageError, type Io } from './io.js';
import { accessMatrix } from './matrix.js';
import { servicePolicyFile } from './services.js';
import { projectPath } from '../../paths.js';

interface RawCase {
  name?: string; service?: string; policy?: string; roles: string[]; method?: string; tool?: string;
  params?: unknown; arguments?: unknown; expect: 'allow' | 'deny'; code?: string;
}
interface RawFile { service?: string; policy?: string; cases: RawCase[] }

export interface CaseResult {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly title: string;
  readonly service: string;
  readonly passed: boolean;
  /** What was decided: 'allow' or 'deny <code>'. */
  readonly actual: string;
  readonly expected: string;
}

export interface TestRun {
  readonly results: readonly CaseResult[];
  /** Test files that are not valid (schema) or name a policy that does not load. */
  readonly errors: readonly Diagnostic[];
  /** service → role → methods/tools with no single-role case. */
  readonly uncovered: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;
}

// Every problem of a test file at once: the operator wrote it, no caller can make it large.
const validateTestFile = createSchemaCompiler({ allErrors: true }).compile(JSON.parse(readFileSync(projectPath('proxy/policy/tooling/test-file.schema.json'), 'utf8')) as Record<string, unknown>);

/** Runs every *.yaml test file under the paths. Decisions come from the sidecar's own evaluate(). */
export function runPolicyTests(paths: readonly string[]): TestRun {
  const results: CaseResult[] = [];
  const errors: Diagnostic[] = [];
  const files = paths.flatMap((given) => {
    const path = resolve(given);
    const found = listTestFiles(path);
    // A directory without a case said only 'FAIL: 0 cases': a CI job pointed at the wrong one.
    const problem = !existsSync(path) ? 'no such file or directory' : found.length === 0 ? 'no test file (*.yaml) in this directory' : undefined;
    if (problem !== undefined) errors.push({ file: path, line: 1, column: 1, severity: 'error', rule: 'test-file', message: problem });
    return found;
  });
  const policies = new Map<string, ServicePolicy>();
  const covered = new Map<string, Set<string>>();
  for (const file of files) {
    const source = readYamlSource(file);
    if (source.problems.length > 0 || !validateTestFile(source.data)) {
      const problems = source.problems.length > 0 ? source.problems
        : describeErrors(validateTestFile.errors).map((message, index) => ({ ...source.locate(pathOf(validateTestFile.errors?.[index]?.instancePath)), message }));
      errors.push(...problems.map((p) => ({ file, line: p.line, column: p.column, severity: 'error' as const, rule: 'test-file', message: p.message })));
      continue;
    }
    const raw = source.data as RawFile;
    raw.cases.forEach((testCase, index) => {
      const at = source.locate(['cases', index]);
      let policy: ServicePolicy;
      try {
        policy = policyFor(policies, file, testCase.policy ?? raw.policy, testCase.service ?? raw.service);
      } catch (error) {
        const message = isPolicyLoadError(error) ? `policy invalid:\n${error.problems.map(formatProblem).join('\n')}` : (error as Error).message;
        errors.push({ file, line: at.line, column: at.column, severity: 'error', rule: 'test-policy', message });
        return;
      }
      const misuse = caseMisuse(policy, testCase);
      if (misuse !== undefined) {
        errors.push({ file, line: at.line, column: at.column, severity: 'error', rule: 'test-case', message: misuse });
        return;
      }
      const result = runCase(policy, testCase, file, at);
      results.push(result);
      if (testCase.roles.length === 1) {
        const key = `${policy.service}\0${testCase.roles[0]}`;
        const seen = covered.get(key) ?? new Set<string>();
        seen.add(testCase.tool !== undefined ? `tool ${testCase.tool}` : (testCase.method ?? ''));
        covered.set(key, seen);
      }
    });
  }
  return { results, errors, uncovered: uncoveredGrants(policies, covered) };
}

/**
 * A case that cannot test what it seems to: no call at all, a tool on a method that does not read
 * one, a refusal code on an allow, or a role, method or tool the policy does not know expected to
 * be refused for no stated reason (a typo would pass as a deny).
 */
function caseMisuse(policy: ServicePolicy, testCase: RawCase): string | undefined {
  if (testCase.method === undefined && testCase.tool === undefined) return 'a case names a method or a tool';
  const perTool = [...policy.methods.values()].find((method) => method.access === 'per_tool')?.name ?? 'tools/call';
  if (testCase.tool !== undefined && testCase.method !== undefined && testCase.method !== perTool) {
    return `tool '${testCase.tool}' is only read by ${perTool}, not by method '${testCase.method}'`;
  }
  if (testCase.tool !== undefined && testCase.params !== undefined) {
    if (testCase.arguments !== undefined) return 'a tool case gives arguments or params (the whole tools/call params), not both';
    const named = (testCase.params as { name?: unknown } | null)?.name;
    if (named !== testCase.tool) return `params.name is the tool the sidecar decides on: it is ${JSON.stringify(named)}, not '${testCase.tool}'`;
  }
  if (testCase.expect === 'allow' && testCase.code !== undefined) return `code is the refusal a deny expects: say expect: deny, or drop code: ${testCase.code}`;
  if (testCase.expect === 'deny' && testCase.code === undefined) {
    const unknown = testCase.roles.find((role) => !policy.roles.has(role));
    if (unknown !== undefined) return `the rbac file of ${policy.service} defines no role '${unknown}': a token's unknown roles are ignored, so the case would pass as a deny; say code: authz.no_roles if that refusal is the point`;
    if (testCase.tool !== undefined && !policy.tools.has(testCase.tool)) return `service ${policy.service} serves no tool '${testCase.tool}': say code: authz.tool_denied if that refusal is the point`;
    if (testCase.tool === undefined && testCase.method !== undefined && !policy.methods.has(testCase.method)) return `service ${policy.service} serves no method '${testCase.method}': say code: authz.method_unknown if that refusal is the point`;
  }
  return undefined;
}

function runCase(policy: ServicePolicy, testCase: RawCase, file: string, at: { line: number; column: number }): CaseResult {
  const method = testCase.method ?? (testCase.tool !== undefined ? 'tools/call' : '');
  const tool = testCase.tool;
  const params = testCase.params ?? (tool !== undefined ? { name: tool, arguments: testCase.arguments ?? {} } : undefined);
  // The call as the sidecar's parser makes it from these params: the tool and its arguments are
  // what params name, whatever else the case says.
  const request = toolCall(0, undefined, method, params);
  // Without params a case is about RBAC alone; with them the schemas are checked as the sidecar does.
  const decision: Decision = testCase.params !== undefined || testCase.arguments !== undefined ? evaluate(policy, testCase.roles, request) : decide(policy, testCase.roles, request);
  const actual = decision.allowed ? 'allow' : `deny ${decision.code}`;
  const expected = testCase.expect === 'allow' ? 'allow' : `deny${testCase.code !== undefined ? ` ${testCase.code}` : ''}`;
  const passed = testCase.expect === 'allow' ? decision.allowed : !decision.allowed && (testCase.code === undefined || testCase.code === decision.code);
  const call = tool !== undefined ? `${method} ${tool}` : method;
  const title = testCase.name ?? `${policy.service}: [${testCase.roles.join(', ')}] ${call}`;
  return { file, line: at.line, column: at.column, title, service: policy.service, passed, actual, expected };
}

function policyFor(cache: Map<string, ServicePolicy>, testFile: string, policyPath: string | undefined, service: string | undefined): ServicePolicy {
  // services/NAME.yaml beside the tests directory first: a policy directory tests its own files.
  const file = resolve(servicePolicyFile({ service, policy: policyPath === undefined ? undefined : resolve(dirname(testFile), policyPath), dir: dirname(dirname(testFile)) }));
  let policy = cache.get(file);
  if (!policy) {
    policy = loadPolicy(file);
    cache.set(file, policy);
  }
  return policy;
}

/** For every policy a test used: the role × method/tool cells no single-role case exercises. */
function uncoveredGrants(policies: ReadonlyMap<string, ServicePolicy>, covered: ReadonlyMap<string, ReadonlySet<string>>): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  for (const policy of policies.values()) {
    const matrix = accessMatrix(policy);
    const byRole = new Map<string, string[]>();
    for (const role of matrix.roles) {
      const seen = covered.get(`${policy.service}\0${role}`) ?? new Set<string>();
      const missing = matrix.rows.map((row) => (row.kind === 'tool' ? `tool ${row.name}` : row.name)).filter((name) => !seen.has(name));
      if (missing.length > 0) byRole.set(role, missing);
    }
    if (byRole.size > 0) out.set(policy.service, byRole);
  }
  return out;
}

/**
 * The *.yaml files of a path, walked as policy check walks: a symlinked directory is not entered.
 * Followed, a link back up (tests/all -> ..) was walked until stat failed (ELOOP), and a dangling
 * link was stat'ed: the command died with a stack trace. A linked file is a test file like another.
 */
function listTestFiles(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)).flatMap((entry) => {
    const child = join(path, entry.name);
    return entry.isDirectory() ? listTestFiles(child) : /\.ya?ml$/.test(entry.name) ? [child] : [];
  });
}

function pathOf(pointer: string | undefined): string[] {
  return (pointer ?? '').split('/').slice(1);
}

/** Locates a failure for editors: file:line:col of the case. */
export function formatResult(result: CaseResult): string {
  const where = `${displayPath(result.file)}:${result.line}:${result.column}`;
  return result.passed ? `ok    ${result.title}` : `FAIL  ${where}: ${result.title}: expected ${result.expected}, got ${result.actual}`;
}

const HELP = `usage: ca-a2a policy test [DIR|FILE...] [--verbose] [--coverage] [--format text|json]

Runs the policy test files (default: policies/tests): each case gives roles, a method or
a tool (with params or arguments), and the expected allow, or deny with its refusal code.
A case's service is ../services/NAME.yaml beside the tests directory, else a shipped one.
--coverage: also fail when a role × method/tool of a tested service has no single-role case.
Exit 1 on any failure.
`;

export async function testCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, { verbose: { type: 'boolean', short: 'v' }, coverage: { type: 'boolean' }, format: { type: 'string' } }, HELP, io, 'test');
  if ('exit' in args) return args.exit;
  const format = pickFormat(args.values.format, ['text', 'json'] as const, 'text');
  if (!format) return usageError(io, 'test', `unknown format '${String(args.values.format)}'`, HELP);
  const run = runPolicyTests(args.positionals.length > 0 ? args.positionals : ['policies/tests']);
  const failed = run.results.filter((result) => !result.passed);
  const uncoveredCount = [...run.uncovered.values()].reduce((sum, byRole) => sum + [...byRole.values()].reduce((n, names) => n + names.length, 0), 0);
  const ok = failed.length === 0 && run.errors.length === 0 && run.results.length > 0 && (args.values.coverage !== true || uncoveredCount === 0);
  if (format === 'json') {
    io.out(`${JSON.stringify({ ok, passed: run.results.length - failed.length, failed: failed.length, results: run.results, errors: run.errors, uncovered: Object.fromEntries([...run.uncovered].map(([service, byRole]) => [service, Object.fromEntries(byRole)])) }, null, 2)}\n`);
    return ok ? 0 : 1;
  }
  for (const error of run.errors) io.out(`${displayPath(error.file)}:${error.line}:${error.column}: error ${error.rule}: ${error.message}\n`);
  for (const result of run.results) if (args.values.verbose === true || !result.passed) io.out(`${formatResult(result)}\n`);
  for (const [service, byRole] of run.uncovered) {
    for (const [role, names] of byRole) io.out(`uncovered  ${service}: role '${role}' has no case for ${names.join(', ')}\n`);
  }
  const services = new Set(run.results.map((result) => result.service)).size;
  io.out(`${ok ? 'ok' : 'FAIL'}: ${run.results.length} cases on ${services} services, ${failed.length} failed, ${run.errors.length} file errors, ${uncoveredCount} uncovered grants\n`);
  return ok ? 0 : 1;
}
