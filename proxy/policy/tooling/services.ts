import { existsSync } from 'node:fs';
import { loadPolicy } from '../load.js';
import type { ServicePolicy } from '../model.js';
import { isShippedService, SHIPPED_SERVICES, shippedPolicyFile } from '../../services.js';
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
