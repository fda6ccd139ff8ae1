import type { NameMatcher } from './model.js';

/** Compiles allow/deny patterns once: exact names into a Set, '*' globs into anchored RegExps. */
export function compileMatcher(patterns: readonly string[]): NameMatcher {
  const exact = new Set<string>();
  const globs: { source: string; regex: RegExp }[] = [];
  for (const pattern of patterns) {
    if (!pattern.includes('*')) {
      exact.add(pattern);
      continue;
    }
    const body = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&')).join('.*');
    globs.push({ source: pattern, regex: new RegExp(`^${body}$`) });
  }
  return Object.freeze({ exact, patterns: Object.freeze(globs) });
}

/** The pattern that matches name, or undefined. Exact names win over globs for explanations. */
export function matchName(matcher: NameMatcher, name: string): string | undefined {
  if (matcher.exact.has(name)) return name;
  for (const glob of matcher.patterns) if (glob.regex.test(name)) return glob.source;
  return undefined;
}
