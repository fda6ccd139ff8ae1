import { projectPath } from './paths.js';

/** The services ca-a2a ships a policy for, and the ports `npm start` and the docs use. */
export const SHIPPED_SERVICES = {
  mcp: { port: 8000, upstreamPort: 9000 },
  orchestrator: { port: 8001, upstreamPort: 9001 },
  extractor: { port: 8002, upstreamPort: 9002 },
  validator: { port: 8003, upstreamPort: 9003 },
  archivist: { port: 8004, upstreamPort: 9004 },
  admin: { port: 8005, upstreamPort: 9005 },
} as const;

export type ShippedService = keyof typeof SHIPPED_SERVICES;

export function isShippedService(name: string): name is ShippedService {
  return Object.hasOwn(SHIPPED_SERVICES, name);
}

/** policies/services/NAME.yaml of this checkout. */
export function shippedPolicyFile(service: ShippedService): string {
  return projectPath(`policies/services/${service}.yaml`);
}

/** Admin listener port convention: service port + 1100 (8001 → 9101). */
export function adminPortFor(port: number): number {
  return port + 1100;
}
