import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isPolicyLoadError } from '../../proxy/policy/errors.js';
import { loadPolicy, type PolicyOverrides } from '../../proxy/policy/load.js';
import { shippedPolicyFile, type ShippedService } from '../../proxy/services.js';
import { tempDirSync } from './temp-dir.js';

const POLICIES_DIR = new URL('../../policies/', import.meta.url).pathname;

/** A copy of a shipped service policy with `edit` applied to its text, its relative references made absolute. */
export function editedShippedPolicy(service: ShippedService, edit: (text: string) => string): string {
  const file = join(tempDirSync(`policy-${service}`), `${service}.yaml`);
  writeFileSync(file, edit(readFileSync(shippedPolicyFile(service), 'utf8').replace(/(?<=: )\.\.\//g, POLICIES_DIR)));
  return file;
}

/** The problems (`path: message`) loading this policy file with these overrides reports, or none. */
export function loadProblems(file: string, overrides: PolicyOverrides = {}): string[] {
  try {
    loadPolicy(file, overrides);
    return [];
  } catch (error) {
    if (!isPolicyLoadError(error)) throw error;
    return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
  }
}
