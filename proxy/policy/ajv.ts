import { Ajv, type CodeOptions, type ErrorObject } from 'ajv';
import addFormats, { type FormatName } from 'ajv-formats';
import { whyPatternUnsafe } from './safe-pattern.js';

/**
 * An Ajv instance for schemas written by policy authors (method params, tool arguments).
 * strict: a misspelt keyword is a policy error rather than a schema that accepts everything.
 * One instance per policy version, so a reload never mixes old and new compiled schemas.
 *
 * allErrors stays off for schemas that check what callers send: with it, ajv goes on through
 * every keyword after one failed and makes an error object for each failure, so one body could
 * buy a million of them (an array of a million wrong items: 237 ms and 63 MB per MB of body, and
 * the MCP service takes 14 MB bodies), and a maxLength did not keep a pattern from running over
 * the string it had just refused. Without it, ajv stops at the first failure: a caller learns the
 * first failing path. `allErrors: true` is for files an operator wrote (policy test files).
 */
export function createSchemaCompiler(options: { readonly allErrors?: boolean } = {}): Ajv {
  const ajv = new Ajv({
    strict: true, allErrors: options.allErrors ?? false, coerceTypes: false, useDefaults: false, validateFormats: true,
    code: { regExp: linearRegExp },
  });
  // ajv-formats is CommonJS; under NodeNext its plugin is the module's `default` export.
  addFormats.default(ajv, [...POLICY_FORMATS]);
  return ajv;
}

/**
 * The ajv-formats formats a policy schema may use, named one by one so that a new version of
 * ajv-formats adds none unreviewed. Each checks a string in time linear in its length (measured on
 * pumped strings of 10 000 and 80 000 characters). Not url: its regular expression took 0.19 s on
 * 10 000 characters and 7.9 s on 80 000 ("http://" then colons).
 */
export const POLICY_FORMATS = [
  'date', 'time', 'date-time', 'iso-time', 'iso-date-time', 'duration', 'uri', 'uri-reference', 'uri-template', 'email',
  'hostname', 'ipv4', 'ipv6', 'regex', 'uuid', 'json-pointer', 'json-pointer-uri-fragment', 'relative-json-pointer', 'byte',
  'int32', 'int64', 'float', 'double', 'password', 'binary',
] as const satisfies readonly FormatName[];

/**
 * How ajv makes the RegExp of every `pattern` and `patternProperties` key: refused unless
 * safe-pattern.ts shows it runs in linear time. The loader reports each one first, where it is
 * written (schema-matchers.ts); this holds for any schema compiled here, wherever the pattern sits.
 */
const linearRegExp: NonNullable<CodeOptions['regExp']> = Object.assign((source: string, flags: string): RegExp => {
  const why = whyPatternUnsafe(source);
  if (why !== undefined) throw new Error(`pattern '${source}' is refused: ${why}`);
  return new RegExp(source, flags);
}, { code: 'new RegExp' });

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
