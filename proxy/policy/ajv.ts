import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';

/**
 * An Ajv instance for schemas written by policy authors (method params, tool arguments).
 * strict: a misspelt keyword is a policy error rather than a schema that accepts everything.
 * One instance per policy version, so a reload never mixes old and new compiled schemas.
 */
export function createSchemaCompiler(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: true, coerceTypes: false, useDefaults: false, validateFormats: true });
  // ajv-formats is CommonJS; under NodeNext its plugin is the module's `default` export.
  addFormats.default(ajv);
  return ajv;
}

/** Failing paths of a validation, short and safe to return to a 4xx caller. */
export function describeErrors(errors: readonly ErrorObject[] | null | undefined, limit = 10): string[] {
  if (!errors) return [];
  return errors.slice(0, limit).map((error) => {
    const at = error.instancePath === '' ? '(root)' : error.instancePath;
    if (error.keyword === 'additionalProperties') {
      return `${at}: unexpected property '${String(error.params.additionalProperty)}'`;
    }
    return `${at}: ${error.message ?? error.keyword}`;
  });
}
