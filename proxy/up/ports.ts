import { SHIPPED_SERVICES, adminPortFor, type ShippedService } from '../services.js';

/** Where one service of the stack listens: its sidecar, its sidecar's admin listener, the service itself. */
export interface ServicePorts {
  readonly sidecar: number;
  readonly admin: number;
  readonly upstream: number;
}

/** The issuer's port and each service's ports. */
export interface StackPorts {
  readonly issuer: number;
  service(name: ShippedService): ServicePorts;
}

/** The documented ports (issuer 8080, sidecars 8000-8005, services 9000-9005, admin listeners +1100). */
export const DEFAULT_PORTS: StackPorts = {
  issuer: 8080,
  service: (name) => ({ sidecar: SHIPPED_SERVICES[name].port, admin: adminPortFor(SHIPPED_SERVICES[name].port), upstream: SHIPPED_SERVICES[name].upstreamPort }),
};

/** Every port picked by the system: for tests, and for running a second stack beside the first. */
export const EPHEMERAL_PORTS: StackPorts = { issuer: 0, service: () => ({ sidecar: 0, admin: 0, upstream: 0 }) };

/**
 * The documented layout shifted by `offset` (the issuer moves with it): `--port-offset 200` gives
 * sidecars 8200-8205 and the issuer 8280. Not 100 beside the default layout: its agents' ports
 * 9100-9105 are the first stack's admin listeners (docs/agents.md lists the offsets that clash).
 */
export function offsetPorts(offset: number): StackPorts {
  return {
    issuer: DEFAULT_PORTS.issuer + offset,
    service: (name) => {
      const ports = DEFAULT_PORTS.service(name);
      return { sidecar: ports.sidecar + offset, admin: ports.admin + offset, upstream: ports.upstream + offset };
    },
  };
}
