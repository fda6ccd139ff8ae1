import { CfnResource, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { FixedSubnetCidrs } from './fixed-subnets.js';

export interface NetworkProps {
  readonly availabilityZones: readonly string[];
  readonly logRetention: logs.RetentionDays;
}

export const VPC_CIDR = '10.0.0.0/16';
export const PUBLIC_SUBNETS = ['10.0.1.0/24', '10.0.2.0/24'] as const;
export const PRIVATE_SUBNETS = ['10.0.10.0/24', '10.0.20.0/24'] as const;
/** Where every task, data store and interface endpoint of the stack lives: the private subnets. */
export const PRIVATE_SUBNET_SELECTION = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED } as const satisfies ec2.SubnetSelection;

/**
 * The VPC: the ALB in the public subnets, every task and data store in the private ones, which
 * have no route out of the VPC. AWS APIs the tasks call (image pulls, logs, secrets, the documents
 * bucket, the scraper's ECS API and Amazon Managed Prometheus) are VPC endpoints and no task's
 * security group allows the internet, so a NAT gateway would carry nothing and is not built.
 */
export class Network extends Construct {
  readonly vpc: ec2.Vpc;
  /** Guards the interface endpoints; task security groups are let in by SecurityGroups. */
  readonly endpointsSecurityGroup: ec2.SecurityGroup;
  readonly s3Endpoint: ec2.GatewayVpcEndpoint;
  /** Guards the endpoints only the metrics scraper uses (ECS API, Amazon Managed Prometheus). */
  readonly scraperEndpointsSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);

    const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: new FixedSubnetCidrs(VPC_CIDR, { public: PUBLIC_SUBNETS, private: PRIVATE_SUBNETS }),
      availabilityZones: [...props.availabilityZones],
      natGateways: 0,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        // Isolated: no default route. The group keeps its name, so the subnets and their route
        // tables keep their logical ids and an update from a stack with NAT gateways replaces neither.
        { name: 'private', subnetType: PRIVATE_SUBNET_SELECTION.subnetType, cidrMask: 24 },
      ],
      restrictDefaultSecurityGroup: true,
      flowLogs: {
        all: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
          trafficType: ec2.FlowLogTrafficType.ALL,
        },
      },
    });
    for (const subnet of this.vpc.publicSubnets) {
      (subnet.node.defaultChild as ec2.CfnSubnet).mapPublicIpOnLaunch = false;
    }
    this.#restrictDefaultSgLogGroup(props.logRetention);

    this.endpointsSecurityGroup = new ec2.SecurityGroup(this, 'EndpointsSg', {
      vpc: this.vpc,
      description: 'ca-a2a interface endpoints',
      allowAllOutbound: false,
    });

    // ECR image layers are served from S3, so every task reaches S3 through this endpoint; its
    // policy (set by the stack) limits the documents bucket to the MCP task role.
    this.s3Endpoint = this.vpc.addGatewayEndpoint('S3', {
      service: ec2.GatewayVpcEndpointAwsService.S3,
      subnets: [PRIVATE_SUBNET_SELECTION],
    });

    const interfaceEndpoints = {
      EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
      EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
      Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
      SecretsManager: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    };
    // The metrics scraper's only ways out: discovery through the ECS API and remote write to Amazon
    // Managed Prometheus, each through an endpoint of its own group, which admits the scraper alone.
    this.scraperEndpointsSecurityGroup = new ec2.SecurityGroup(this, 'ScraperEndpointsSg', {
      vpc: this.vpc,
      description: 'ca-a2a scraper endpoints',
      allowAllOutbound: false,
    });
    const scraperEndpoints = {
      Ecs: ec2.InterfaceVpcEndpointAwsService.ECS,
      PrometheusWorkspaces: ec2.InterfaceVpcEndpointAwsService.PROMETHEUS_WORKSPACES,
    };
    for (const [endpoints, group] of [[interfaceEndpoints, this.endpointsSecurityGroup], [scraperEndpoints, this.scraperEndpointsSecurityGroup]] as const) {
      for (const [name, service] of Object.entries(endpoints)) {
        this.vpc.addInterfaceEndpoint(name, {
          service,
          subnets: PRIVATE_SUBNET_SELECTION,
          securityGroups: [group],
          // `open` would admit the whole VPC CIDR; only task security groups are admitted.
          open: false,
          privateDnsEnabled: true,
        });
      }
    }
  }

  /**
   * `restrictDefaultSecurityGroup` runs a Lambda whose log group Lambda would create on first
   * write, without retention; CDK's provider has no log group setting. Creating the group under
   * the name Lambda uses, before the custom resource invokes the handler, gives it one.
   */
  #restrictDefaultSgLogGroup(retention: logs.RetentionDays): void {
    const provider = Stack.of(this).node.tryFindChild('Custom::VpcRestrictDefaultSGCustomResourceProvider');
    const handler = provider?.node.tryFindChild('Handler');
    const restrict = this.vpc.node.tryFindChild('RestrictDefaultSecurityGroupCustomResource');
    if (handler === undefined || !CfnResource.isCfnResource(handler) || restrict === undefined) {
      throw new Error('restrictDefaultSecurityGroup: CDK no longer creates the handler this stack gives a log group to');
    }
    const handlerLogs = new logs.LogGroup(this, 'RestrictDefaultSgHandlerLogs', {
      logGroupName: Fn.join('', ['/aws/lambda/', handler.ref]),
      retention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    restrict.node.addDependency(handlerLogs);
  }
}
