import { POLICY_FORMATS } from './ajv.js';
import type { PolicyProblem } from './errors.js';
import { whyPatternUnsafe } from './safe-pattern.js';
import type { YamlSource } from './yaml-source.js';

// Keywords whose value is data, never a schema: a `pattern` or `format` in them is never run.
const DATA_KEYWORDS = new Set(['enum', 'const', 'default', 'examples']);
// Keywords whose value maps names (for patternProperties, regular expressions) to schemas: the
// names are not keywords, so a property named `enum` or `pattern` is a schema like any other.
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependentSchemas', 'dependencies']);

const FORMATS: ReadonlySet<string> = new Set(POLICY_FORMATS);

/**
 * What of a JSON Schema could take more than linear time on what a caller sends, as problems where
 * it is written: each `pattern` and `patternProperties` key safe-pattern.ts cannot show linear, and
 * each `format` that is not one of POLICY_FORMATS. `path` is where the schema sits in `source`.
 */
export function unsafeMatchers(schema: unknown, source: YamlSource, path: readonly (string | number)[]): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const report = (at: readonly (string | number)[], message: string, key?: string): void => {
    const pointer = `/${[...at, ...(key === undefined ? [] : [key])].join('/')}`;
    problems.push({ ...source.locate(at, key), path: pointer, message });
  };
  const checkPattern = (pattern: string, at: readonly (string | number)[], key?: string): void => {
    const why = whyPatternUnsafe(pattern);
    if (why !== undefined) report(at, `pattern '${pattern}' is refused: ${why}`, key);
  };
  const walk = (node: unknown, at: readonly (string | number)[]): void => {
    if (Array.isArray(node)) {
      node.forEach((item, index) => walk(item, [...at, index]));
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    for (const [key, value] of Object.entries(node)) {
      if (DATA_KEYWORDS.has(key)) continue;
      if (key === 'pattern' && typeof value === 'string') {
        checkPattern(value, [...at, key]);
      } else if (key === 'format' && typeof value === 'string' && !FORMATS.has(value)) {
        const why = value === 'url' ? ': its check can take time growing faster than the string (7.9 s on 80 000 characters); use uri' : '';
        report([...at, key], `format '${value}' is not available${why} (available: ${POLICY_FORMATS.join(', ')})`);
      } else if (SCHEMA_MAPS.has(key) && typeof value === 'object' && value !== null && !Array.isArray(value)) {
        for (const [name, schema] of Object.entries(value)) {
          if (key === 'patternProperties') checkPattern(name, [...at, key], name);
          walk(schema, [...at, key, name]);
        }
      } else {
        walk(value, [...at, key]);
      }
    }
  };
  walk(schema, path);
  return problems;
}
