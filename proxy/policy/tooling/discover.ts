import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { readYamlSource } from '../yaml-source.js';
import type { Diagnostic } from './diagnostics.js';

/** The policy files found under the paths given to a command, by kind. */
export interface PolicyFiles {
  readonly services: readonly string[];
  readonly rbacs: readonly string[];
  /** Paths that do not exist or named files that are neither kind. */
  readonly diagnostics: readonly Diagnostic[];
}

// schemas/ hold JSON Schemas that policies $ref, tests/ hold `policy test` cases: not policies.
const NOT_POLICY_DIRS = new Set(['schemas', 'tests', 'node_modules']);

/**
 * Walks files and directories: a YAML file with `roles:` is an rbac file, one with `service:`
 * (or any YAML file under services/) a service policy. Rbac files that a service references
 * are added even when outside the paths, so a service is never checked against nothing.
 */
export function discoverPolicyFiles(paths: readonly string[]): PolicyFiles {
  const services = new Set<string>();
  const rbacs = new Set<string>();
  const diagnostics: Diagnostic[] = [];
  const classify = (file: string, named: boolean): void => {
    const source = readYamlSource(file);
    const data = source.data as Record<string, unknown> | undefined;
    if (data !== undefined && typeof data === 'object' && data !== null && 'roles' in data) rbacs.add(file);
    else if ((data !== undefined && typeof data === 'object' && data !== null && 'service' in data) || basename(dirname(file)) === 'services') services.add(file);
    else if (source.problems.length > 0) services.add(file); // let the loader report the syntax error with its position
    else if (named) diagnostics.push({ file, line: 1, column: 1, severity: 'error', rule: 'not-a-policy', message: 'neither a service policy (service:) nor an rbac file (roles:)' });
  };
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!NOT_POLICY_DIRS.has(entry.name)) walk(path);
      } else if (/\.ya?ml$/.test(entry.name)) {
        classify(path, false);
      }
    }
  };
  for (const given of paths) {
    const path = resolve(given);
    if (!existsSync(path)) {
      diagnostics.push({ file: path, line: 1, column: 1, severity: 'error', rule: 'file-not-found', message: 'no such file or directory' });
    } else if (statSync(path).isDirectory()) {
      const before = services.size + rbacs.size;
      walk(path);
      // A CI job pointed at the wrong directory would otherwise pass, having checked nothing.
      if (services.size + rbacs.size === before) diagnostics.push({ file: path, line: 1, column: 1, severity: 'error', rule: 'not-a-policy', message: 'no policy file (a service policy or an rbac file) in this directory' });
    } else {
      classify(path, true);
    }
  }
  for (const file of services) {
    const data = readYamlSource(file).data as { rbac?: unknown } | undefined;
    if (typeof data?.rbac === 'string') {
      const rbac = resolve(dirname(file), data.rbac);
      // One that is missing or not a file is reported by the loader, where the service names it.
      if (existsSync(rbac) && statSync(rbac).isFile()) rbacs.add(rbac);
    }
  }
  return { services: [...services], rbacs: [...rbacs], diagnostics };
}
