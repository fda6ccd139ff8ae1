import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct } from 'constructs';

/** The uid:gid our image runs as (deploy/Dockerfile creates it). */
export const APP_USER = '10001:10001';

/**
 * A container health check that asks an HTTP endpoint inside the task. The image has node but
 * no curl, so node's fetch does the request; any non-2xx or error is unhealthy.
 */
export function httpHealthCheck(url: string, startPeriodSeconds = 20): ecs.HealthCheck {
  const script = `fetch(${JSON.stringify(url)}).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  return {
    command: ['CMD', 'node', '-e', script],
    interval: Duration.seconds(10),
    timeout: Duration.seconds(5),
    retries: 3,
    startPeriod: Duration.seconds(startPeriodSeconds),
  };
}

/**
 * Fargate has no `no-new-privileges` switch; what it offers is non-privileged containers, a
 * non-root user and dropping every Linux capability, which together leave nothing to escalate to.
 */
export function hardenedLinux(scope: Construct, id: string): ecs.LinuxParameters {
  const linux = new ecs.LinuxParameters(scope, id, { initProcessEnabled: true });
  linux.dropCapabilities(ecs.Capability.ALL);
  return linux;
}

/**
 * A task-local scratch volume (Fargate ephemeral storage) mounted into one container: with a
 * read-only root filesystem, this is the only writable path. `name` must be unique in the task.
 */
export function addScratch(task: ecs.TaskDefinition, container: ecs.ContainerDefinition, name: string, path = '/tmp'): void {
  task.addVolume({ name });
  container.addMountPoints({ sourceVolume: name, containerPath: path, readOnly: false });
}

/** How every service of the stack runs: private subnets, no public IP, rolling with rollback. */
export function privateServiceDefaults() {
  return {
    vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    assignPublicIp: false,
    minHealthyPercent: 100,
    maxHealthyPercent: 200,
    circuitBreaker: { rollback: true },
  } as const;
}
