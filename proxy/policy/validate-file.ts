import { readFileSync } from 'node:fs';
import type { ErrorObject } from 'ajv';
import type { PolicyProblem } from './errors.js';
// The two schemas below as ajv standalone code (bin/gen-policy-validators.js): compiling them
// took about 140 ms of every sidecar's start. A test fails while it does not match the schemas.
import * as validators from './schemas/validators.generated.cjs';
import type { YamlSource } from './yaml-source.js';
import { projectPath } from '../paths.js';

/** The two file formats a policy is made of; their JSON Schemas live in ./schemas/. */
export type PolicyFileKind = 'service' | 'rbac';

const SCHEMA_FILES: Record<PolicyFileKind, string> = {
  service: 'proxy/policy/schemas/service.schema.json',
  rbac: 'proxy/policy/schemas/rbac.schema.json',
};

// Renamed or commonly misspelt keys get a pointed hint rather than "unexpected property".
const RENAMED_KEYS: Readonly<Record<string, string>> = {
  public: 'public_routes',
  routes: 'public_routes',
  jwks_url: 'jwks_uri',
  roles_path: 'roles_claim',
  rate_limits: 'rate_limit',
  ratelimit: 'rate_limit',
  leeway: 'clock_tolerance_seconds',
  token_type: 'token_types',
  permissions: 'allow',
  allowed: 'allow',
  denied: 'deny',
  schema: 'params',
};

/** Reads a schema of ours; also used by the policy docs generator. */
export function readPolicySchema(kind: PolicyFileKind): Record<string, unknown> {
  const path = projectPath(SCHEMA_FILES[kind]);
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

/**
 * The most schema problems listed for one file. Each is located by a walk of its map, so 80,000
 * unknown keys (a generated file gone wrong, under the size limit) took minutes of the sidecar's
 * thread, and made a reload's audit line as long: one mistake, not 80,000 lines to read.
 */
export const MAX_LISTED_PROBLEMS = 50;

/** Validates a parsed file in place (defaults applied); returns its problems (the first MAX_LISTED_PROBLEMS) with their positions. */
export function validatePolicyFile(kind: PolicyFileKind, source: YamlSource): PolicyProblem[] {
  if (source.problems.length > 0) return [...source.problems];
  const validate = validators[kind];
  if (validate(source.data)) return [];
  const errors = validate.errors ?? [];
  const problems = errors.slice(0, MAX_LISTED_PROBLEMS).map((error) => toProblem(source, error));
  if (errors.length > MAX_LISTED_PROBLEMS) {
    problems.push({ ...source.locate([]), path: '/', message: `${errors.length - MAX_LISTED_PROBLEMS} more problems not listed (the first ${MAX_LISTED_PROBLEMS} are)` });
  }
  return problems;
}

function toProblem(source: YamlSource, error: ErrorObject): PolicyProblem {
  const path = error.instancePath.split('/').slice(1).map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (error.keyword === 'additionalProperties') {
    const key = String(error.params.additionalProperty);
    const hint = RENAMED_KEYS[key];
    const message = hint ? `unknown key '${key}' (did you mean '${hint}'?)` : `unknown key '${key}'`;
    return { ...source.locate(path, key), path: error.instancePath || '/', message };
  }
  const allowed = error.keyword === 'enum' ? ` (one of: ${(error.params.allowedValues as unknown[]).join(', ')})` : '';
  return { ...source.locate(path), path: error.instancePath || '/', message: `${error.message ?? error.keyword}${allowed}` };
}
