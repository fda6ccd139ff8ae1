import { compileMatcher, matchName } from '../matcher.js';
import type { ServicePolicy } from '../model.js';
import type { YamlSource } from '../yaml-source.js';
import type { Diagnostic } from './diagnostics.js';
import { didYouMean } from './suggest.js';

interface RawRole {
  allow?: string[];
  deny?: string[];
  tools?: { allow?: string[]; deny?: string[]; arguments?: Record<string, unknown> };
}

type Kind = 'method' | 'tool';

/**
 * Semantic rules for one rbac file, against the services that reference it (what exists to be
 * granted). Without services only the rules that need none run: a roles file alone cannot know
 * that a method is misspelt.
 */
export function lintRbac(source: YamlSource, services: readonly ServicePolicy[]): Diagnostic[] {
  const roles = (source.data as { roles?: Record<string, RawRole> }).roles ?? {};
  const known = services.length > 0;
  const served: Record<Kind, Set<string>> = {
    method: new Set(services.flatMap((policy) => [...policy.methods.keys()])),
    tool: new Set(services.flatMap((policy) => [...policy.tools.keys()])),
  };
  const out: Diagnostic[] = [];
  const report = (path: (string | number)[], severity: Diagnostic['severity'], rule: string, message: string, key?: string): void => {
    out.push({ ...source.locate(path, key), severity, rule, message });
  };

  for (const [role, raw] of Object.entries(roles)) {
    const lists: { kind: Kind; allow: string[]; deny: string[]; base: (string | number)[] }[] = [
      { kind: 'method', allow: raw.allow ?? [], deny: raw.deny ?? [], base: ['roles', role] },
      { kind: 'tool', allow: raw.tools?.allow ?? [], deny: raw.tools?.deny ?? [], base: ['roles', role, 'tools'] },
    ];
    let grants = 0;
    for (const { kind, allow, deny, base } of lists) {
      const denyMatcher = compileMatcher(deny);
      for (const [effect, entries] of [['allow', allow], ['deny', deny]] as const) {
        entries.forEach((pattern, index) => {
          const at = [...base, effect, index];
          if (!known) return;
          if (!pattern.includes('*')) {
            if (!served[kind].has(pattern)) {
              const consequence = effect === 'deny' ? 'this deny never applies' : 'the grant gives nothing';
              report(at, 'error', `unknown-${kind}`, `role '${role}' ${effect === 'allow' ? 'allows' : 'denies'} ${kind} '${pattern}', which no service serves: ${consequence}${didYouMean(pattern, served[kind])}`);
            }
          } else if (![...served[kind]].some((name) => matchName(compileMatcher([pattern]), name) !== undefined)) {
            report(at, 'warning', effect === 'deny' ? 'deny-never-applies' : 'pattern-matches-nothing', `role '${role}': ${effect} pattern '${pattern}' matches no ${kind} any service serves`);
          }
        });
      }
      allow.forEach((pattern, index) => {
        const by = matchName(denyMatcher, pattern);
        if (by !== undefined) report([...base, 'allow', index], 'warning', 'allow-shadowed', `role '${role}' allows ${kind} '${pattern}' but its own deny '${by}' overrides it`);
      });
      // Effective grants: allowed, not denied by the role itself, and (when known) served.
      const allowMatcher = compileMatcher(allow);
      if (known) {
        grants += [...served[kind]].filter((name) => matchName(allowMatcher, name) !== undefined && matchName(denyMatcher, name) === undefined).length;
      } else {
        grants += allow.filter((pattern) => matchName(denyMatcher, pattern) === undefined).length;
      }
    }
    if (grants === 0) report(['roles'], 'warning', 'role-allows-nothing', `role '${role}' allows nothing${known ? ' any service serves' : ''}: every request it makes is refused`, role);

    const toolAllow = compileMatcher(raw.tools?.allow ?? []);
    for (const tool of Object.keys(raw.tools?.arguments ?? {})) {
      const at = ['roles', role, 'tools', 'arguments'];
      if (matchName(toolAllow, tool) === undefined) {
        report(at, 'warning', 'arguments-without-grant', `role '${role}' restricts the arguments of '${tool}' but does not allow that tool: the restriction never applies`, tool);
      } else if (known && !served.tool.has(tool)) {
        report(at, 'error', 'unknown-tool', `role '${role}' restricts the arguments of tool '${tool}', which no service serves${didYouMean(tool, served.tool)}`, tool);
      }
    }
  }
  return out;
}
