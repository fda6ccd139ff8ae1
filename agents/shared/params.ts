import type { ValidateFunction } from 'ajv';
import { createSchemaCompiler } from '../../proxy/policy/ajv.js';
import type { MethodSpec } from './method-specs.js';

/** Compiled params validators, one per method, built once at start. */
export type ParamsValidators = ReadonlyMap<string, ValidateFunction>;

/**
 * Compiles each method's params schema with the sidecar's compiler (linear patterns only, the
 * first failure ends a check). The sidecar checks the same schema first; the agent checks again
 * because it can be run without one (tests, a local `ca-a2a agent`) or behind a sidecar in
 * dry-run mode, and a handler may then rely on the params' shape.
 */
export function compileParams(specs: readonly MethodSpec[]): ParamsValidators {
  const ajv = createSchemaCompiler();
  return new Map(specs.map((spec) => [spec.name, ajv.compile(spec.params)]));
}

/** Short messages for a failed validation, safe to return to the caller. */
export function describeParamsErrors(validate: ValidateFunction): string[] {
  return (validate.errors ?? []).slice(0, 10).map((error) => {
    const at = error.instancePath === '' ? '(root)' : error.instancePath;
    if (error.keyword === 'additionalProperties') return `${at}: unexpected property '${String(error.params['additionalProperty'])}'`;
    return `${at}: ${error.message ?? error.keyword}`;
  });
}
