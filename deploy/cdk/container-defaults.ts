import { Duration, Size } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { PRIVATE_SUBNET_SELECTION } from './network.js';

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
 * awslogs for a container of our image (sidecar, MCP gateway, agents, admin API), in blocking
 * mode, said rather than left to the account's default (non-blocking since mid-2025 unless the
 * account setting says otherwise). Their logger never waits on stdout: it holds at most 16 MiB of
 * lines and drops each line past that whole, counted by the sidecar and the gateway. Blocking
 * lets a stuck driver's back-pressure reach that buffer, so lines are lost where they are counted
 * and alerted on, not in the driver's buffer, where nothing of ours sees them.
 */
export function appLogs(logGroup: logs.ILogGroup, streamPrefix: string): ecs.LogDriver {
  return ecs.LogDrivers.awsLogs({ logGroup, streamPrefix, mode: ecs.AwsLogDriverMode.BLOCKING });
}

/** What the driver holds for a container in non-blocking mode: as much as our processes hold themselves. */
export const THIRD_PARTY_LOG_BUFFER = Size.mebibytes(16);

/**
 * awslogs for a container whose logging is not ours (Keycloak, the ADOT collector, the Service
 * Connect proxy): non-blocking, lines past {@link THIRD_PARTY_LOG_BUFFER} dropped by the driver.
 * Their writes to stdout wait on a blocking driver, so one stuck on CloudWatch Logs would stop
 * Keycloak issuing tokens, the collector scraping, and the proxy carrying calls between services.
 */
export function thirdPartyLogs(logGroup: logs.ILogGroup, streamPrefix: string): ecs.LogDriver {
  return ecs.LogDrivers.awsLogs({ logGroup, streamPrefix, mode: ecs.AwsLogDriverMode.NON_BLOCKING, maxBufferSize: THIRD_PARTY_LOG_BUFFER });
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
 * Fargate mounts it root-owned 0755 unless the image declares `path` a VOLUME, whose owner and
 * mode it then takes: our images declare every path mounted here.
 */
export function addScratch(task: ecs.TaskDefinition, container: ecs.ContainerDefinition, name: string, path = '/tmp'): void {
  task.addVolume({ name });
  container.addMountPoints({ sourceVolume: name, containerPath: path, readOnly: false });
}

/** How every service of the stack runs: private subnets (no route out of the VPC), no public IP, rolling with rollback. */
export function privateServiceDefaults() {
  return {
    vpcSubnets: PRIVATE_SUBNET_SELECTION,
    assignPublicIp: false,
    minHealthyPercent: 100,
    maxHealthyPercent: 200,
    circuitBreaker: { rollback: true },
  } as const;
}
