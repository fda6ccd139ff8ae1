import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { shippedPolicyFile } from '../proxy/services.js';

/**
 * The policy `npm run bench:mcp` runs its sidecar on: the shipped mcp policy with only the rate
 * limit raised, so the limiter runs on every request without refusing. Edited as YAML, not
 * appended to: the shipped file has a rate_limit of its own (per role).
 */
export function benchMcpPolicy(rbacFile: string): string {
  const policy = parseDocument(readFileSync(shippedPolicyFile('mcp'), 'utf8'));
  policy.set('rbac', rbacFile);
  policy.setIn(['rate_limit', 'points'], 100_000_000);
  policy.setIn(['rate_limit', 'window_seconds'], 60);
  return policy.toString();
}
