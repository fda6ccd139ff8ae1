import type { DestinationStream } from 'pino';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { startSidecar, type Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture } from '../../helpers/audit-capture.js';

/**
 * The orchestrator's sidecar (its shipped policy, or `policyFile`) with an egress listener on a
 * free loopback port and no agent behind it.
 */
export function startEgressSidecar(options: {
  readonly issuer: string;
  readonly policyFile?: string;
  readonly clientSecret: string | undefined;
  readonly serviceUrls: Readonly<Record<string, string>>;
  readonly logDestination?: DestinationStream;
}): Promise<Sidecar> {
  return startSidecar({
    issuer: options.issuer,
    watchPolicy: false,
    logDestination: options.logDestination ?? new AuditCapture(),
    policyFile: options.policyFile ?? shippedPolicyFile('orchestrator'),
    upstream: 'http://127.0.0.1:1',
    egressListen: '127.0.0.1:0',
    clientSecret: options.clientSecret,
    serviceUrls: options.serviceUrls,
  });
}
