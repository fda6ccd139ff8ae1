import { existsSync } from 'node:fs';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';
import { isShippedService, SHIPPED_SERVICES, shippedPolicyFile } from '../../services.js';
import { displayPath } from './diagnostics.js';
import { discoverPolicyFiles } from './discover.js';

/**
 * The service policy file a command means: `--policy FILE`, or `--service NAME` (a shipped
 * service, or a services/NAME.yaml under the given directory).
 */
export function servicePolicyFile(options: { service?: string | undefined; policy?: string | undefined; dir?: string | undefined }): string {
  if (options.policy !== undefined) return options.policy;
  const name = options.service;
  if (name === undefined) throw new Error('give --service NAME or --policy FILE');
  if (options.dir !== undefined) {
    const local = `${options.dir}/services/${name}.yaml`;
    if (existsSync(local)) return local;
  }
  if (isShippedService(name)) return shippedPolicyFile(name);
  throw new Error(`unknown service '${name}' (shipped: ${Object.keys(SHIPPED_SERVICES).join(', ')}); use --policy FILE`);
}

/** Every service policy under the paths, loaded (throws PolicyLoadError on the first invalid one). */
export function loadServices(paths: readonly string[]): ServicePolicy[] {
  return discoverPolicyFiles(paths).services.map((file) => loadPolicy(file)).sort((a, b) => a.service.localeCompare(b.service));
}

/**
 * The service policies under the paths a command was given, found as `policy check` finds them;
 * with `service`, only those whose `service:` is that name, as `policy diff` pairs them (a file
 * needs no particular name). A path that is missing or holds no policy, or no policy serving the
 * name, is an error: an empty answer would read as "nothing granted", and the shipped policy in
 * its place as the named directory's.
 */
export function servicesUnder(paths: readonly string[], service?: string): ServicePolicy[] {
  const problem = discoverPolicyFiles(paths).diagnostics[0];
  if (problem !== undefined) throw new Error(`${displayPath(problem.file)}: ${problem.message}`);
  const policies = loadServices(paths);
  const where = paths.join(', ');
  if (policies.length === 0) throw new Error(`no service policy under ${where}`);
  if (service === undefined) return policies;
  const named = policies.filter((policy) => policy.service === service);
  if (named.length === 0) throw new Error(`no policy under ${where} serves '${service}' (they serve: ${[...new Set(policies.map((policy) => policy.service))].join(', ')})`);
  return named;
}

/** Why `--service`, `--policy` and DIR|FILE arguments cannot go together; undefined when they can. */
export function selectionConflict(service: string | undefined, policy: string | undefined, paths: readonly string[]): string | undefined {
  if (service !== undefined && policy !== undefined) return 'give --service NAME or --policy FILE, not both';
  if (policy !== undefined && paths.length > 0) return `--policy FILE is the policy read: unexpected argument '${paths[0]}' (DIR|FILE arguments go with --service NAME)`;
  return undefined;
}
