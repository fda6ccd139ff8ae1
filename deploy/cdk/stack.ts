import { CfnOutput, CfnParameter, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { MeshCluster } from './cluster.js';
import { DOCUMENT_PREFIXES, EGRESS_PORT, PUBLIC_URL_PATTERN, UPSTREAM_PORT, keycloakHostname, type AgentName, type DeployConfig, type SecuredServiceName } from './config.js';
import { Data } from './data.js';
import { Ingress } from './ingress.js';
import { KeycloakService } from './keycloak-service.js';
import { MetricsScraper } from './metrics-scraper.js';
import { Network, PRIVATE_SUBNET_SELECTION, PUBLIC_SUBNETS } from './network.js';
import { SecuredService, type UpstreamSpec } from './secured-service.js';
import { SecurityGroups } from './security-groups.js';

export interface CaA2aStackProps extends StackProps {
  readonly config: DeployConfig;
}

const UPSTREAM_LISTEN = `127.0.0.1:${UPSTREAM_PORT}`;

/**
 * The whole deployment: network → security groups → data → cluster → services → ingress.
 * Values that change per deploy (certificate, image tag) are CloudFormation parameters; values
 * that shape the template (region, counts, sizes) are CDK context, see config.ts.
 */
export class CaA2aStack extends Stack {
  readonly services: Readonly<Record<SecuredServiceName, SecuredService>>;

  constructor(scope: Construct, id: string, props: CaA2aStackProps) {
    super(scope, id, props);
    const { config } = props;
    const logRetention = retention(config.logRetentionDays);

    const certificateArn = new CfnParameter(this, 'CertificateArn', {
      type: 'String',
      description: 'ACM certificate for the ALB HTTPS listener (no default: deploying needs a real one)',
      allowedPattern: '^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$',
    });
    // No default unless -c publicUrl= gives one: the orchestrator's sidecar checks every DPoP proof's
    // htu against it, so a placeholder left in place refuses every signed call through the ALB.
    const publicUrl = new CfnParameter(this, 'PublicUrl', {
      type: 'String',
      description: 'URL clients reach the orchestrator by through the ALB, your DNS name (https://HOST): the DPoP htu its sidecar expects',
      allowedPattern: PUBLIC_URL_PATTERN,
      ...(config.publicUrl === undefined ? {} : { default: config.publicUrl }),
    });
    const imageTag = new CfnParameter(this, 'ImageTag', {
      type: 'String',
      description: `Tag of the ca-a2a image in the ECR repository '${config.imageRepository}'`,
      default: 'latest',
    });

    const network = new Network(this, 'Network', {
      availabilityZones: config.availabilityZones,
      logRetention,
    });
    const { groups } = new SecurityGroups(this, 'SecurityGroups', {
      vpc: network.vpc,
      endpointsSecurityGroup: network.endpointsSecurityGroup,
      scraperEndpointsSecurityGroup: network.scraperEndpointsSecurityGroup,
      albIngressCidr: config.albIngressCidr,
    });
    const data = new Data(this, 'Data', {
      vpc: network.vpc,
      documentsDbSecurityGroup: groups.documentsDb,
      keycloakDbSecurityGroup: groups.keycloakDb,
      revocationsDbSecurityGroup: groups.revocationsDb,
      redisSecurityGroup: groups.redis,
      redisNodeType: config.redisNodeType,
    });
    const mesh = new MeshCluster(this, 'Mesh', { vpc: network.vpc, serviceConnectCaArn: config.serviceConnectCaArn });

    const image = ecs.ContainerImage.fromEcrRepository(
      ecr.Repository.fromRepositoryName(this, 'ImageRepository', config.imageRepository),
      imageTag.valueAsString,
    );
    // One Redis user per party (redis-acl.ts): the sidecars' may not push revocations, the admin API's may only push them.
    const redisUrl = ecs.Secret.fromSecretsManager(data.redis.sidecarUrl);
    const adminRedisUrl = ecs.Secret.fromSecretsManager(data.redis.adminUrl);
    const revocationsDbUrl = ecs.Secret.fromSecretsManager(data.revocationsDbUrl);
    const revocationsReaderUrl = ecs.Secret.fromSecretsManager(data.revocationsReaderUrl);
    const clientSecret = (name: keyof typeof data.clientSecrets): ecs.Secret => ecs.Secret.fromSecretsManager(data.clientSecrets[name]);

    // Each agent's card (GET /.well-known/agent-card.json) names the issuer as its security scheme.
    const agent = (name: AgentName, environment: Readonly<Record<string, string>> = {}): UpstreamSpec => ({
      name: 'agent',
      command: ['agent', name, '--listen', UPSTREAM_LISTEN],
      environment: { CA_A2A_EGRESS_URL: `http://127.0.0.1:${EGRESS_PORT}`, CA_A2A_ISSUER: config.issuerUrl, ...environment },
    });
    const upstreams: Record<SecuredServiceName, UpstreamSpec> = {
      // Its card is public through the ALB: without this it would say http://<Host>/message, a
      // scheme the ALB does not serve (it ends TLS). The URL its sidecar checks DPoP htu against.
      orchestrator: agent('orchestrator', { CA_A2A_PUBLIC_URL: Fn.join('', [publicUrl.valueAsString, '/message']) }),
      extractor: agent('extractor'),
      validator: agent('validator'),
      archivist: agent('archivist'),
      mcp: {
        name: 'mcp-gateway',
        command: ['mcp-gateway', '--listen', UPSTREAM_LISTEN],
        environment: {
          CA_A2A_S3_BUCKET: data.documentsBucket.bucketName,
          // The folders its task role is granted (documentsAccess): set here so the two cannot drift.
          CA_A2A_S3_PREFIXES: DOCUMENT_PREFIXES.join(','),
          AWS_REGION: this.region,
          CA_A2A_DATA_DIR: '/tmp/ca-a2a',
        },
        secrets: { DATABASE_URL: ecs.Secret.fromSecretsManager(data.documentsDbUrl) },
      },
      admin: {
        name: 'admin-api',
        command: ['admin-api', '--listen', UPSTREAM_LISTEN],
        // Writes revocations durably, then pushes them to every sidecar through Redis.
        secrets: { DATABASE_URL: revocationsDbUrl, REDIS_URL: adminRedisUrl },
        // The tables' owner migrates them and keeps the sidecars' read-only role (its password
        // from the reader URL's secret, SELECT only) at every start of an admin task, before the
        // API starts. Sidecars started earlier are not ready until it has run (docs/deploy.md).
        before: {
          name: 'revocations-migrate',
          command: ['revoke', 'migrate'],
          secrets: { DATABASE_URL: revocationsDbUrl, CA_A2A_REVOCATIONS_READER_URL: revocationsReaderUrl },
        },
      },
    };

    const common = {
      cluster: mesh.cluster,
      namespace: mesh.namespace,
      tls: mesh.tls,
      tlsReady: mesh.tlsReady,
      image,
      issuerUrl: config.issuerUrl,
      logRetention,
    };
    const make = (service: SecuredServiceName, extra: { egress: boolean; publicUrls?: readonly string[]; trustedProxies?: readonly string[]; memoryLimitMiB?: number }): SecuredService =>
      new SecuredService(this, `${service[0]?.toUpperCase()}${service.slice(1)}`, {
        ...common,
        ...extra,
        service,
        securityGroup: groups[service],
        desiredCount: config.desiredCounts[service],
        upstream: upstreams[service],
        sidecarSecrets: {
          REDIS_URL: redisUrl,
          // Sidecars only read revocations: SELECT, no DDL, no writes (the admin API writes).
          DATABASE_URL: revocationsReaderUrl,
          // Only the egress listener asks for tokens: a sidecar without it never holds a client secret.
          ...(extra.egress && service !== 'mcp' ? { CA_A2A_CLIENT_SECRET: clientSecret(service) } : {}),
        },
      });
    this.services = {
      // Behind the ALB, whose nodes run in the public subnets: the caller is the one it names in
      // X-Forwarded-For (audit client_ip, the stolen-token alarm), not the ALB node.
      orchestrator: make('orchestrator', { egress: true, publicUrls: [publicUrl.valueAsString], trustedProxies: PUBLIC_SUBNETS }),
      // Its PDF reader (one PDF at a time, up to 384 MiB) beside its 8 PDFs and 8 other documents
      // held (about 40 MiB each at most: agents/shared/admission.ts) and the sidecar: about 1 GiB at worst.
      extractor: make('extractor', { egress: true, memoryLimitMiB: 2048 }),
      validator: make('validator', { egress: true }),
      archivist: make('archivist', { egress: true }),
      mcp: make('mcp', { egress: false }),
      admin: make('admin', { egress: false }),
    };

    // "-75% IAM roles": the MCP task role is the only one granted the documents bucket; the
    // database URL secret reaches only the MCP task (through its execution role, as ECS secrets do).
    const mcpTaskRole = this.services.mcp.taskDefinition.taskRole;
    for (const statement of documentsAccess(data, this.region)) mcpTaskRole.addToPrincipalPolicy(statement);
    network.s3Endpoint.addToPolicy(new iam.PolicyStatement({
      sid: 'EcrImageLayers',
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:GetObject'],
      resources: [`arn:${this.partition}:s3:::prod-${this.region}-starport-layer-bucket/*`],
    }));
    network.s3Endpoint.addToPolicy(new iam.PolicyStatement({
      sid: 'DocumentsBucketMcpOnly',
      principals: [new iam.ArnPrincipal(mcpTaskRole.roleArn)],
      actions: [...DOCUMENT_OBJECT_ACTIONS, 's3:ListBucket'],
      resources: [data.documentsBucket.bucketArn, ...DOCUMENT_PREFIXES.map((prefix) => data.documentsBucket.arnForObjects(`${prefix}*`))],
    }));

    new KeycloakService(this, 'Keycloak', {
      cluster: mesh.cluster,
      namespace: mesh.namespace,
      tls: mesh.tls,
      tlsReady: mesh.tlsReady,
      securityGroup: groups.keycloak,
      image: ecs.ContainerImage.fromEcrRepository(
        ecr.Repository.fromRepositoryName(this, 'KeycloakRepository', config.keycloakRepository),
        config.keycloakTag,
      ),
      database: data.keycloakDb,
      hostname: keycloakHostname(config.issuerUrl),
      clientSecrets: Object.fromEntries(Object.keys(data.clientSecrets).map((name) => [name, clientSecret(name as keyof typeof data.clientSecrets)])),
      desiredCount: config.desiredCounts.keycloak,
      logRetention,
    });

    const metrics = new MetricsScraper(this, 'Metrics', {
      cluster: mesh.cluster,
      securityGroup: groups.scraper,
      logRetention,
      collectorImage: config.collectorImage,
      image,
    });

    new Ingress(this, 'Ingress', {
      vpc: network.vpc,
      securityGroup: groups.alb,
      certificateArn: certificateArn.valueAsString,
      orchestrator: this.services.orchestrator.service,
      accessLogs: data.accessLogsBucket,
      wafRateLimit: config.wafRateLimit,
      logRetention,
    });

    // Revoking from an operator's shell (docs/runbooks.md): a one-off task of the admin task
    // definition whose admin-api container runs `revoke …` instead of the API. It holds the
    // revocations DATABASE_URL and REDIS_URL and its group reaches both; no port, shell or
    // ECS Exec channel is opened for it.
    new CfnOutput(this, 'AlertsTopicArn', { value: metrics.alertsTopic.topicArn, description: 'SNS topic of the alerts (aws sns subscribe --topic-arn)' });
    new CfnOutput(this, 'ClusterName', { value: mesh.cluster.clusterName, description: 'ECS cluster (aws ecs run-task --cluster)' });
    new CfnOutput(this, 'AdminTaskNetwork', {
      description: 'aws ecs run-task --task-definition ca-a2a-admin --network-configuration <this>',
      value: Fn.join('', [
        'awsvpcConfiguration={subnets=[', Fn.join(',', network.vpc.selectSubnets(PRIVATE_SUBNET_SELECTION).subnetIds),
        '],securityGroups=[', groups.admin.securityGroupId, '],assignPublicIp=DISABLED}',
      ]),
    });
  }
}

/** What the MCP gateway's S3 store calls: GetObject (and HeadObject), PutObject, DeleteObject. */
const DOCUMENT_OBJECT_ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'] as const;

/**
 * The MCP gateway's access to the documents, action by action (grantReadWrite would add
 * wildcards such as s3:DeleteObject*, which includes DeleteObjectVersion and so would let the
 * gateway erase the versions versioning keeps, and s3:PutObjectRetention, s3:GetBucket*…):
 * objects under DOCUMENT_PREFIXES only, and the bucket's key only through S3.
 */
function documentsAccess(data: Data, region: string): iam.PolicyStatement[] {
  const bucket = data.documentsBucket;
  return [
    new iam.PolicyStatement({
      sid: 'DocumentsObjects',
      actions: [...DOCUMENT_OBJECT_ACTIONS],
      resources: DOCUMENT_PREFIXES.map((prefix) => bucket.arnForObjects(`${prefix}*`)),
    }),
    // Listing (the gateway lists under its prefixes only); without it S3 answers 403, not 404,
    // for a key that does not exist, and the gateway would report a missing object as an error.
    new iam.PolicyStatement({ sid: 'DocumentsList', actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }),
    new iam.PolicyStatement({
      sid: 'DocumentsKeyThroughS3',
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [data.documentsKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `s3.${region}.amazonaws.com` } },
    }),
  ];
}

/** CloudWatch accepts only certain retention periods; refuse others at synth, not at deploy. */
function retention(days: number): logs.RetentionDays {
  const allowed = Object.values(logs.RetentionDays).filter((value): value is logs.RetentionDays => typeof value === 'number');
  const match = allowed.find((value) => value === days);
  if (match === undefined) throw new Error(`context logRetentionDays=${days} is not a CloudWatch retention (${allowed.join(', ')})`);
  return match;
}
