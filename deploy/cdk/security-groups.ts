import { Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import {
  ADMIN_PORT,
  AGENTS,
  KEYCLOAK_CLUSTER_PORTS,
  KEYCLOAK_PORT,
  SECURED_SERVICES,
  SERVICE_PORTS,
  type SecuredServiceName,
} from './config.js';

/** Every party that owns a security group. */
export type Party = SecuredServiceName | 'alb' | 'keycloak' | 'scraper' | 'redis' | 'documentsDb' | 'keycloakDb' | 'revocationsDb' | 'endpoints' | 'scraperEndpoints';

/** Tasks that pull images, write logs and read secrets through the VPC endpoints. */
const TASKS = [...SECURED_SERVICES, 'keycloak', 'scraper'] as const;

interface PeerRule {
  readonly from: Party;
  readonly to: Party;
  readonly port: number;
  readonly why: string;
}

/**
 * THE table of allowed flows between security groups; everything else is denied (no group
 * allows all outbound). Each row becomes an egress rule on `from` and an ingress rule on `to`.
 */
const PEER_RULES: readonly PeerRule[] = [
  { from: 'alb', to: 'orchestrator', port: SERVICE_PORTS.orchestrator, why: 'the one public entry: ALB to the orchestrator sidecar' },
  ...(['extractor', 'validator', 'archivist'] as const).map((to) => ({
    from: 'orchestrator' as const, to, port: SERVICE_PORTS[to], why: `orchestrator delegates to the ${to} sidecar`,
  })),
  ...AGENTS.map((from) => ({ from, to: 'mcp' as const, port: SERVICE_PORTS.mcp, why: `${from} reaches data only through the MCP sidecar` })),
  { from: 'mcp', to: 'documentsDb', port: 5432, why: 'the MCP gateway is the only holder of database access' },
  { from: 'keycloak', to: 'keycloakDb', port: 5432, why: 'Keycloak to its own database' },
  ...KEYCLOAK_CLUSTER_PORTS.map((port) => ({ from: 'keycloak' as const, to: 'keycloak' as const, port, why: `Keycloak replicas form one cluster (JGroups jdbc-ping, tcp/${port})` })),
  ...SECURED_SERVICES.map((from) => ({ from, to: 'revocationsDb' as const, port: 5432, why: `${from} sidecar loads durable revocations (the admin API writes them); no documents there` })),
  ...SECURED_SERVICES.map((from) => ({ from, to: 'redis' as const, port: 6379, why: `${from} sidecar shares replay, rate-limit and revocation state` })),
  ...SECURED_SERVICES.map((from) => ({ from, to: 'keycloak' as const, port: KEYCLOAK_PORT, why: `${from} sidecar fetches JWKS and client_credentials tokens` })),
  ...SECURED_SERVICES.map((to) => ({ from: 'scraper' as const, to, port: ADMIN_PORT, why: `metrics and readiness of the ${to} sidecar, scraper only` })),
  ...TASKS.map((from) => ({ from, to: 'endpoints' as const, port: 443, why: `${from} task pulls images, writes logs, reads secrets` })),
  { from: 'scraper', to: 'scraperEndpoints', port: 443, why: 'the collector discovers tasks (ECS API) and remote-writes to Amazon Managed Prometheus' },
];

export interface SecurityGroupsProps {
  readonly vpc: ec2.IVpc;
  readonly endpointsSecurityGroup: ec2.SecurityGroup;
  readonly scraperEndpointsSecurityGroup: ec2.SecurityGroup;
  readonly albIngressCidr: string;
}

/** Creates one security group per party and applies PEER_RULES plus the few non-group rules. */
export class SecurityGroups extends Construct {
  readonly groups: Readonly<Record<Party, ec2.SecurityGroup>>;

  constructor(scope: Construct, id: string, props: SecurityGroupsProps) {
    super(scope, id);
    const make = (party: Exclude<Party, 'endpoints' | 'scraperEndpoints'>): ec2.SecurityGroup =>
      new ec2.SecurityGroup(this, `${party}Sg`, {
        vpc: props.vpc,
        description: `ca-a2a ${party}`,
        allowAllOutbound: false,
      });
    const parties = [...SECURED_SERVICES, 'alb', 'keycloak', 'scraper', 'redis', 'documentsDb', 'keycloakDb', 'revocationsDb'] as const;
    const groups = Object.fromEntries(parties.map((party) => [party, make(party)])) as Record<Exclude<Party, 'endpoints' | 'scraperEndpoints'>, ec2.SecurityGroup>;
    this.groups = { ...groups, endpoints: props.endpointsSecurityGroup, scraperEndpoints: props.scraperEndpointsSecurityGroup };

    for (const rule of PEER_RULES) {
      const from = this.groups[rule.from].connections;
      // allowTo on its own group would add the egress half only (CDK skips the mirrored ingress).
      if (rule.from === rule.to) from.allowInternally(ec2.Port.tcp(rule.port), rule.why);
      else from.allowTo(this.groups[rule.to], ec2.Port.tcp(rule.port), rule.why);
    }

    this.groups.alb.addIngressRule(ec2.Peer.ipv4(props.albIngressCidr), ec2.Port.tcp(443), 'HTTPS clients');

    // ECR serves image layers from S3, so every task needs the S3 prefix list; the documents
    // bucket itself stays limited to the MCP task role by IAM and by the endpoint policy.
    const s3PrefixList = ec2.Peer.prefixList(this.#lookUpS3PrefixList());
    for (const task of TASKS) {
      this.groups[task].addEgressRule(s3PrefixList, ec2.Port.tcp(443), 'S3 gateway endpoint (ECR image layers)');
    }

  }

  /** Prefix list ids differ per region and CloudFormation has no intrinsic for them. */
  #lookUpS3PrefixList(): string {
    const region = Stack.of(this).region;
    const lookup = new cr.AwsCustomResource(this, 'S3PrefixList', {
      onUpdate: {
        service: 'EC2',
        action: 'DescribeManagedPrefixLists',
        parameters: { Filters: [{ Name: 'prefix-list-name', Values: [`com.amazonaws.${region}.s3`] }] },
        physicalResourceId: cr.PhysicalResourceId.of(`s3-prefix-list-${region}`),
        outputPaths: ['PrefixLists.0.PrefixListId'],
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
      installLatestAwsSdk: false,
    });
    return lookup.getResponseField('PrefixLists.0.PrefixListId');
  }
}
