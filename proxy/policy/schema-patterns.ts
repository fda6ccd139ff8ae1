import type { PolicyProblem } from './errors.js';
import { whyPatternUnsafe } from './safe-pattern.js';
import type { YamlSource } from './yaml-source.js';

// Keywords whose value is data, never a schema: a `pattern` key in them is not compiled.
const DATA_KEYWORDS = new Set(['enum', 'const', 'default', 'examples']);
// Keywords whose value maps names (for patternProperties, regular expressions) to schemas: the
// names are not keywords, so a property named `enum` or `pattern` is a schema like any other.
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependentSchemas', 'dependencies']);

/**
 * Every regular expression of a JSON Schema (each `pattern`, each `patternProperties` key) that
 * could take more than linear time on what a caller sends (safe-pattern.ts), as a problem where it
 * is written. `path` is where the schema sits in `source`.
 */
export function unsafePatterns(schema: unknown, source: YamlSource, path: readonly (string | number)[]): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const check = (pattern: string, at: readonly (string | number)[], key?: string): void => {
    const why = whyPatternUnsafe(pattern);
    if (why === undefined) return;
    const pointer = `/${[...at, ...(key === undefined ? [] : [key])].join('/')}`;
    problems.push({ ...source.locate(at, key), path: pointer, message: `pattern '${pattern}' is refused: ${why}` });
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
        check(value, [...at, key]);
      } else if (SCHEMA_MAPS.has(key) && typeof value === 'object' && value !== null && !Array.isArray(value)) {
        for (const [name, schema] of Object.entries(value)) {
          if (key === 'patternProperties') check(name, [...at, key], name);
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
