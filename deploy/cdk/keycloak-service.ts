import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct, type IDependable } from 'constructs';
import type { AuroraPostgres } from './aurora.js';
import { KEYCLOAK_MANAGEMENT_PORT, KEYCLOAK_PORT, serviceDnsName } from './config.js';
import { addScratch, hardenedLinux, privateServiceDefaults, thirdPartyLogs } from './container-defaults.js';

export interface KeycloakServiceProps {
  readonly cluster: ecs.ICluster;
  readonly namespace: servicediscovery.INamespace;
  readonly tls: ecs.ServiceConnectTlsConfiguration;
  readonly tlsReady: IDependable;
  readonly securityGroup: ec2.ISecurityGroup;
  /** A pre-built image (`kc.sh build` done, realm under data/import): see docs/deploy.md. */
  readonly image: ecs.ContainerImage;
  readonly database: AuroraPostgres;
  /** KC_HOSTNAME, the frontend URL: tokens carry it + /realms/ca-a2a as `iss` (config.keycloakHostname). */
  readonly hostname: string;
  /** Client secrets, exposed to the realm import as CA_A2A_CLIENT_SECRET_<CLIENT>. */
  readonly clientSecrets: Readonly<Record<string, ecs.Secret>>;
  readonly desiredCount: number;
  readonly logRetention: logs.RetentionDays;
}

/**
 * The RDS CA bundle deploy/keycloak/Dockerfile puts in the image: the JVM does not trust Aurora's
 * server certificates otherwise, and pgjdbc reads a PEM file of several certificates as its root.
 */
export const KEYCLOAK_RDS_CA_BUNDLE = '/opt/keycloak/conf/rds-global-bundle.pem';

/** The keycloak image's own user. */
const KEYCLOAK_USER = '1000:0';

/**
 * Keycloak (realm ca-a2a) on its own Aurora cluster, reachable only by the sidecars through
 * Service Connect as keycloak.ca-a2a.local. `start --optimized` because a read-only root
 * filesystem forbids the build step plain `start` would run.
 */
export class KeycloakService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;

  constructor(scope: Construct, id: string, props: KeycloakServiceProps) {
    super(scope, id);
    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: '/ca-a2a/keycloak',
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', { family: 'ca-a2a-keycloak', cpu: 1024, memoryLimitMiB: 2048 });

    const endpoint = props.database.cluster.clusterEndpoint;
    const secretEnv = Object.fromEntries(
      Object.entries(props.clientSecrets).map(([client, secret]) => [`CA_A2A_CLIENT_SECRET_${client.toUpperCase().replaceAll('-', '_')}`, secret]),
    );
    const container = this.taskDefinition.addContainer('keycloak', {
      image: props.image,
      command: ['start', '--optimized', '--import-realm'],
      essential: true,
      user: KEYCLOAK_USER,
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'Linux'),
      environment: {
        KC_DB: 'postgres',
        KC_DB_URL_HOST: endpoint.hostname,
        KC_DB_URL_PORT: Token.asString(endpoint.port),
        KC_DB_URL_DATABASE: 'keycloak',
        // verify-full, as the MCP gateway's and the sidecars' DATABASE_URL: `require` would encrypt
        // without checking who answers, and send the database password to whoever did.
        KC_DB_URL_PROPERTIES: `?sslmode=verify-full&sslrootcert=${KEYCLOAK_RDS_CA_BUNDLE}`,
        // Tokens carry this + /realms/ca-a2a as `iss`: the sidecars' --issuer, from which it is derived.
        KC_HOSTNAME: props.hostname,
        KC_HTTP_ENABLED: 'true',
        KC_HTTP_PORT: String(KEYCLOAK_PORT),
        KC_HEALTH_ENABLED: 'true',
        KC_METRICS_ENABLED: 'true',
        // Replicas discover each other through the database (Keycloak ≥ 26.1) and talk on
        // KEYCLOAK_CLUSTER_PORTS, which the keycloak security group admits from itself.
        KC_CACHE: 'ispn',
        KC_CACHE_STACK: 'jdbc-ping',
      },
      secrets: {
        KC_DB_USERNAME: ecs.Secret.fromSecretsManager(props.database.credentials, 'username'),
        KC_DB_PASSWORD: ecs.Secret.fromSecretsManager(props.database.credentials, 'password'),
        ...secretEnv,
      },
      portMappings: [{ name: 'keycloak', containerPort: KEYCLOAK_PORT, protocol: ecs.Protocol.TCP, appProtocol: ecs.AppProtocol.http }],
      logging: thirdPartyLogs(logGroup, 'keycloak'),
      // The image has bash but neither curl nor node.
      healthCheck: {
        command: [
          'CMD-SHELL',
          `exec 3<>/dev/tcp/127.0.0.1/${KEYCLOAK_MANAGEMENT_PORT} && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '"UP"' <&3`,
        ],
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        retries: 5,
        startPeriod: Duration.seconds(120),
      },
    });
    // What Keycloak writes (deploy/keycloak/Dockerfile declares each a VOLUME, for its owner).
    addScratch(this.taskDefinition, container, 'tmp');
    addScratch(this.taskDefinition, container, 'kc-data-tmp', '/opt/keycloak/data/tmp');
    addScratch(this.taskDefinition, container, 'kc-transaction-logs', '/opt/keycloak/data/transaction-logs');

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: 'ca-a2a-keycloak',
      cluster: props.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount,
      securityGroups: [props.securityGroup],
      ...privateServiceDefaults(),
      serviceConnectConfiguration: {
        namespace: props.namespace.namespaceArn,
        services: [{ portMappingName: 'keycloak', dnsName: serviceDnsName('keycloak'), port: KEYCLOAK_PORT, tls: props.tls }],
        logDriver: thirdPartyLogs(logGroup, 'service-connect'),
      },
    });
    this.service.node.addDependency(props.tlsReady);
  }
}
