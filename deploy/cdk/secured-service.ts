import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct, type IDependable } from 'constructs';
import { ADMIN_PORT, EGRESS_PORT, SERVICE_PORTS, UPSTREAM_PORT, serviceDnsName, type SecuredServiceName } from './config.js';
import { APP_USER, addScratch, appLogs, privateServiceDefaults, hardenedLinux, httpHealthCheck, thirdPartyLogs } from './container-defaults.js';

/** How long the sidecar waits for in-flight requests after SIGTERM (docs/deploy.md, Stopping). */
const SIDECAR_DRAIN = Duration.seconds(25);
/** SIGTERM to SIGKILL: the drain, plus time to log `sidecar_stopped`, flush and exit. */
const SIDECAR_STOP_TIMEOUT = SIDECAR_DRAIN.plus(Duration.seconds(5));

/** What runs behind the sidecar on 127.0.0.1: an agent, the MCP gateway or the admin API. */
export interface UpstreamSpec {
  /** Container name, e.g. `agent`, `mcp-gateway`. */
  readonly name: string;
  /** Arguments to the image's `ca-a2a` entrypoint; must bind 127.0.0.1:UPSTREAM_PORT. */
  readonly command: readonly string[];
  readonly environment?: Readonly<Record<string, string>>;
  readonly secrets?: Readonly<Record<string, ecs.Secret>>;
  /**
   * A one-shot container of the same image run to completion before the upstream starts (the
   * admin API's schema migration); the upstream does not start if it fails.
   */
  readonly before?: { readonly name: string; readonly command: readonly string[]; readonly secrets: Readonly<Record<string, ecs.Secret>> };
}

export interface SecuredServiceProps {
  readonly service: SecuredServiceName;
  readonly cluster: ecs.ICluster;
  readonly namespace: servicediscovery.INamespace;
  readonly tls: ecs.ServiceConnectTlsConfiguration;
  readonly tlsReady: IDependable;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly image: ecs.ContainerImage;
  readonly issuerUrl: string;
  readonly desiredCount: number;
  readonly logRetention: logs.RetentionDays;
  readonly upstream: UpstreamSpec;
  /** Secrets of the sidecar: REDIS_URL always, CA_A2A_CLIENT_SECRET when it calls out. */
  readonly sidecarSecrets: Readonly<Record<string, ecs.Secret>>;
  /** Runs the egress listener on 127.0.0.1 (the upstream calls other services through it). */
  readonly egress: boolean;
  /** `--public-url` values: the URLs clients address this service by (DPoP `htu`). */
  readonly publicUrls?: readonly string[];
  /** `--trusted-proxy` values: where the load balancer in front runs, whose X-Forwarded-For is believed. */
  readonly trustedProxies?: readonly string[];
  /** The task's memory, shared by the sidecar and its upstream: 1024 MiB unless the upstream needs more. */
  readonly memoryLimitMiB?: number;
}

/**
 * One Fargate service = one task shape: the upstream container bound to 127.0.0.1 with no port
 * mapping, and the sidecar in front of it — the only container with a port, started once the
 * upstream is healthy, registered in Service Connect with TLS.
 */
export class SecuredService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly sidecar: ecs.ContainerDefinition;
  readonly upstream: ecs.ContainerDefinition;

  constructor(scope: Construct, id: string, props: SecuredServiceProps) {
    super(scope, id);
    const port = SERVICE_PORTS[props.service];
    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/ca-a2a/${props.service}`,
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      family: `ca-a2a-${props.service}`,
      cpu: 512,
      memoryLimitMiB: props.memoryLimitMiB ?? 1024,
    });

    this.upstream = this.taskDefinition.addContainer(props.upstream.name, {
      image: props.image,
      command: [...props.upstream.command],
      essential: true,
      user: APP_USER,
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'UpstreamLinux'),
      environment: { NODE_ENV: 'production', ...props.upstream.environment },
      secrets: { ...props.upstream.secrets },
      logging: appLogs(logGroup, props.upstream.name),
      healthCheck: httpHealthCheck(`http://127.0.0.1:${UPSTREAM_PORT}/health`),
    });
    addScratch(this.taskDefinition, this.upstream, 'upstream-tmp');
    const before = props.upstream.before;
    if (before !== undefined) {
      const step = this.taskDefinition.addContainer(before.name, {
        image: props.image,
        command: [...before.command],
        essential: false,
        user: APP_USER,
        readonlyRootFilesystem: true,
        privileged: false,
        linuxParameters: hardenedLinux(this, 'BeforeLinux'),
        environment: { NODE_ENV: 'production' },
        secrets: { ...before.secrets },
        logging: appLogs(logGroup, before.name),
      });
      this.upstream.addContainerDependencies({ container: step, condition: ecs.ContainerDependencyCondition.SUCCESS });
    }

    const sidecarArgs = [
      'sidecar',
      '--service', props.service,
      '--listen', `0.0.0.0:${port}`,
      '--upstream', `http://127.0.0.1:${UPSTREAM_PORT}`,
      '--admin-listen', `0.0.0.0:${ADMIN_PORT}`,
      '--issuer', props.issuerUrl,
      ...(props.egress ? ['--egress-listen', `127.0.0.1:${EGRESS_PORT}`] : []),
      // Keycloak over http inside the VPC: Service Connect carries it (and encrypts it with TLS on).
      ...(props.egress && props.issuerUrl.startsWith('http:') ? ['--allow-http-issuer'] : []),
      ...(props.publicUrls ?? []).flatMap((url) => ['--public-url', url]),
      ...(props.trustedProxies ?? []).flatMap((cidr) => ['--trusted-proxy', cidr]),
    ];
    this.sidecar = this.taskDefinition.addContainer('sidecar', {
      image: props.image,
      command: sidecarArgs,
      essential: true,
      user: APP_USER,
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'SidecarLinux'),
      // Egress targets by their Service Connect names (the policies' 127.0.0.1 URLs are for local use).
      environment: { NODE_ENV: 'production', ...(props.egress ? { CA_A2A_SERVICE_URLS: serviceUrls() } : {}) },
      secrets: { ...props.sidecarSecrets },
      // The one port of the task. The admin port (ADMIN_PORT) has no mapping: in awsvpc mode the
      // security group alone decides, and it admits the metrics scraper only.
      portMappings: [{ name: props.service, containerPort: port, protocol: ecs.Protocol.TCP, appProtocol: ecs.AppProtocol.http }],
      // Read by the ADOT collector's ECS discovery to find /metrics.
      dockerLabels: {
        PROMETHEUS_EXPORTER_PORT: String(ADMIN_PORT),
        PROMETHEUS_EXPORTER_PATH: '/metrics',
        PROMETHEUS_EXPORTER_JOB_NAME: 'ca-a2a-sidecar',
      },
      logging: appLogs(logGroup, 'sidecar'),
      healthCheck: httpHealthCheck(`http://127.0.0.1:${ADMIN_PORT}/ready`, 10),
      // On SIGTERM the sidecar drains for up to SIDECAR_DRAIN (25 s): said here rather than left
      // to the launch type's default (Fargate 30 s, EC2 the agent's ECS_CONTAINER_STOP_TIMEOUT).
      stopTimeout: SIDECAR_STOP_TIMEOUT,
    });
    addScratch(this.taskDefinition, this.sidecar, 'sidecar-tmp');
    this.sidecar.addContainerDependencies({ container: this.upstream, condition: ecs.ContainerDependencyCondition.HEALTHY });

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: `ca-a2a-${props.service}`,
      cluster: props.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount,
      securityGroups: [props.securityGroup],
      ...privateServiceDefaults(),
      enableExecuteCommand: false,
      serviceConnectConfiguration: {
        namespace: props.namespace.namespaceArn,
        services: [{ portMappingName: props.service, dnsName: serviceDnsName(props.service), port, tls: props.tls }],
        logDriver: thirdPartyLogs(logGroup, 'service-connect'),
      },
    });
    this.service.node.addDependency(props.tlsReady);
  }
}

/** name=url for every secured service, as its sidecar's egress listener needs them. */
function serviceUrls(): string {
  return Object.entries(SERVICE_PORTS).map(([name, port]) => `${name}=http://${serviceDnsName(name as SecuredServiceName)}:${port}`).join(',');
}
