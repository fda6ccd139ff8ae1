import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { createApp } from '../../deploy/cdk/app.js';
import { ofType, props, referencedId, securityGroupFlows, taskDefinitions, type CfnResource, type Resources } from './cfn.js';

const PUBLIC_CIDRS = ['10.0.1.0/24', '10.0.2.0/24'];
const PRIVATE_CIDRS = ['10.0.10.0/24', '10.0.20.0/24'];

/**
 * The endpoints an action of a task's roles needs, by IAM service prefix: the private subnets
 * have no route out of the VPC, so an AWS API without its endpoint is out of a task's reach.
 */
const ENDPOINTS_OF: Readonly<Record<string, readonly string[]>> = {
  // ECR serves image layers from S3.
  ecr: ['ecr.api', 'ecr.dkr', 's3'],
  logs: ['logs'],
  secretsmanager: ['secretsmanager'],
  s3: ['s3'],
  ecs: ['ecs'],
  aps: ['aps-workspaces'],
};
/** Prefixes of actions a task's roles hold that the task itself never sends to AWS, and why. */
const NOT_CALLED_BY_THE_TASK: Readonly<Record<string, string>> = {
  kms: 'S3 calls KMS for the documents bucket (kms:ViaService), the task never does',
  ec2: "the collector's ECS discovery calls ec2:DescribeInstances only for tasks on EC2 instances; every service is Fargate",
};

interface Statement {
  readonly Action: string | string[];
  readonly Condition?: Record<string, Record<string, unknown>>;
}

const sorted = (values: Iterable<unknown>): string[] => [...values].map(String).sort();

/** `ecr.api` for `com.amazonaws.REGION.ecr.api`, whether the region is written out or a `{Ref}` in an `Fn::Join`. */
function endpointService(endpoint: CfnResource): string {
  const name = props(endpoint)['ServiceName'];
  const parts = (name as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join']?.[1] ?? [name];
  const last = parts[parts.length - 1];
  return typeof last === 'string' ? last.replace(/^(com\.amazonaws\.[a-z0-9-]+)?\./, '') : '?';
}

describe('deploy/cdk network', () => {
  let outdir: string;
  let template: Template;
  let resources: Resources;
  let privateSubnets: string[];
  let privateRouteTables: string[];

  before(() => {
    outdir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-net-'));
    const { stack } = createApp({ outdir });
    template = Template.fromStack(stack);
    resources = template.toJSON()['Resources'] as Resources;
    privateSubnets = ofType(resources, 'AWS::EC2::Subnet').filter(([, s]) => PRIVATE_CIDRS.includes(String(props(s)['CidrBlock']))).map(([id]) => id).sort();
    privateRouteTables = ofType(resources, 'AWS::EC2::SubnetRouteTableAssociation')
      .filter(([, a]) => privateSubnets.includes(referencedId(props(a)['SubnetId']) ?? ''))
      .map(([, a]) => referencedId(props(a)['RouteTableId']) ?? '').sort();
  });
  after(() => rmSync(outdir, { recursive: true, force: true }));

  const refs = (values: unknown): string[] => sorted(((values as unknown[] | undefined) ?? []).map((v) => referencedId(v)));
  const groupNames = (): Map<string, string> => new Map(ofType(resources, 'AWS::EC2::SecurityGroup').map(([id, g]) => [id, String(props(g)['GroupDescription'])]));

  it('is 10.0.0.0/16 with public 10.0.1.0/24, 10.0.2.0/24 and private 10.0.10.0/24, 10.0.20.0/24, none handing out public IPs', () => {
    assert.deepEqual(ofType(resources, 'AWS::EC2::VPC').map(([, v]) => props(v)['CidrBlock']), ['10.0.0.0/16']);
    const subnets = ofType(resources, 'AWS::EC2::Subnet').map(([, s]) => ({
      cidr: String(props(s)['CidrBlock']),
      type: (props(s)['Tags'] as Array<{ Key: string; Value: string }>).find((t) => t.Key === 'aws-cdk:subnet-type')?.Value,
      mapPublicIp: props(s)['MapPublicIpOnLaunch'],
    }));
    assert.deepEqual(sorted(subnets.filter((s) => s.type === 'Public').map((s) => s.cidr)), PUBLIC_CIDRS);
    assert.deepEqual(sorted(subnets.filter((s) => s.type === 'Isolated').map((s) => s.cidr)), PRIVATE_CIDRS);
    assert.equal(subnets.length, 4);
    assert.ok(subnets.every((s) => s.mapPublicIp === false), 'no subnet hands out public IPs');
  });

  it('builds no NAT gateway: the private subnets have no route out of the VPC, the public ones only the ALB\'s to the internet gateway', () => {
    for (const type of ['AWS::EC2::NatGateway', 'AWS::EC2::EIP', 'AWS::EC2::EgressOnlyInternetGateway', 'AWS::EC2::TransitGatewayAttachment', 'AWS::EC2::VPCPeeringConnection']) {
      assert.deepEqual(ofType(resources, type).map(([id]) => id), [], type);
    }
    assert.equal(privateRouteTables.length, 2);
    const [[igw] = ['?']] = ofType(resources, 'AWS::EC2::InternetGateway');
    for (const [id, route] of ofType(resources, 'AWS::EC2::Route')) {
      const table = referencedId(props(route)['RouteTableId']) ?? '';
      assert.ok(!privateRouteTables.includes(table), `${id}: a route out of a private subnet`);
      assert.deepEqual(Object.keys(props(route)).sort(), ['DestinationCidrBlock', 'GatewayId', 'RouteTableId'], id);
      assert.equal(referencedId(props(route)['GatewayId']), igw, id);
    }
  });

  it('has the S3 gateway endpoint, ECR, Logs and Secrets Manager interface endpoints, and ECS and Prometheus ones for the scraper alone: no other (each is paid by the hour and zone)', () => {
    const services = ofType(resources, 'AWS::EC2::VPCEndpoint').map(([, e]) => `${String(props(e)['VpcEndpointType'])} ${endpointService(e)}`);
    assert.deepEqual(services.sort(), ['Gateway s3', 'Interface aps-workspaces', 'Interface ecr.api', 'Interface ecr.dkr', 'Interface ecs', 'Interface logs', 'Interface secretsmanager']);
    const names = groupNames();
    for (const [, endpoint] of ofType(resources, 'AWS::EC2::VPCEndpoint')) {
      const service = endpointService(endpoint);
      const groups = refs(props(endpoint)['SecurityGroupIds']).map((g) => names.get(g));
      if (['ecs', 'aps-workspaces'].includes(service)) assert.deepEqual(groups, ['ca-a2a scraper endpoints'], service);
      else if (props(endpoint)['VpcEndpointType'] === 'Interface') assert.deepEqual(groups, ['ca-a2a interface endpoints'], service);
    }
  });

  it('logs all VPC traffic', () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { ResourceType: 'VPC', TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
  });

  it('runs every Lambda function outside the VPC, where it needs no way out of it', () => {
    const functions = ofType(resources, 'AWS::Lambda::Function');
    assert.ok(functions.length > 0);
    for (const [id, fn] of functions) assert.equal(props(fn)['VpcConfig'], undefined, id);
  });

  it('puts every task, database, Redis and interface endpoint in the two private subnets, and the S3 gateway endpoint on their route tables', () => {
    assert.equal(privateSubnets.length, 2);
    for (const [id, service] of ofType(resources, 'AWS::ECS::Service')) {
      const network = (props(service)['NetworkConfiguration'] as { AwsvpcConfiguration: { Subnets: unknown[]; AssignPublicIp: string } }).AwsvpcConfiguration;
      assert.deepEqual(refs(network.Subnets), privateSubnets, id);
      assert.equal(network.AssignPublicIp, 'DISABLED', id);
    }
    const stores = [...ofType(resources, 'AWS::RDS::DBSubnetGroup'), ...ofType(resources, 'AWS::ElastiCache::SubnetGroup')];
    assert.equal(stores.length, 4, 'three Aurora clusters and Redis');
    for (const [id, group] of stores) assert.deepEqual(refs(props(group)['SubnetIds']), privateSubnets, id);
    for (const [id, endpoint] of ofType(resources, 'AWS::EC2::VPCEndpoint')) {
      if (props(endpoint)['VpcEndpointType'] === 'Gateway') {
        assert.deepEqual(refs(props(endpoint)['RouteTableIds']), privateRouteTables, id);
      } else {
        assert.deepEqual(refs(props(endpoint)['SubnetIds']), privateSubnets, id);
        assert.equal(props(endpoint)['PrivateDnsEnabled'], true, `${id}: the SDKs' default endpoint names must resolve to it`);
      }
    }
  });

  it('gives every task the endpoints of every AWS API its roles call, and its security group the way to each', () => {
    const names = groupNames();
    const flows = new Set(securityGroupFlows(resources).map((f) => `${f.direction} ${f.group} ${f.peer} ${f.port}`));
    const endpoints = ofType(resources, 'AWS::EC2::VPCEndpoint').map(([, e]) => ({
      service: endpointService(e),
      gateway: props(e)['VpcEndpointType'] === 'Gateway',
      groups: refs(props(e)['SecurityGroupIds']).map((g) => names.get(g) ?? g),
    }));
    const statementsOf = (role: string): Statement[] => ofType(resources, 'AWS::IAM::Policy')
      .filter(([, p]) => refs(props(p)['Roles']).includes(role))
      .flatMap(([, p]) => (props(p)['PolicyDocument'] as { Statement: Statement[] }).Statement);
    const byId = new Map([...taskDefinitions(resources).values()].map((t) => [t.id, t]));

    const services = ofType(resources, 'AWS::ECS::Service');
    assert.equal(services.length, 8);
    for (const [, service] of services) {
      const task = byId.get(referencedId(props(service)['TaskDefinition']) ?? '');
      assert.ok(task !== undefined);
      const family = String(props(task.resource)['Family']);
      assert.equal(props(service)['LaunchType'], 'FARGATE', family);
      const network = (props(service)['NetworkConfiguration'] as { AwsvpcConfiguration: { SecurityGroups: unknown[] } }).AwsvpcConfiguration;
      const [group = '?'] = refs(network.SecurityGroups).map((g) => names.get(g) ?? g);

      // Without the internet, only this account's ECR can serve an image.
      for (const container of task.containers) assert.match(JSON.stringify(container.Image), /\.dkr\.ecr\./, `${family}/${container.Name} image`);
      const roles = [props(task.resource)['TaskRoleArn'], props(task.resource)['ExecutionRoleArn']].map((r) => referencedId(r) ?? '');
      assert.equal(roles.filter((r) => r !== '').length, 2, family);
      for (const role of roles) assert.equal(props(resources[role] as CfnResource)['ManagedPolicyArns'], undefined, `${family}: ${role} managed policies`);

      const needed = new Set<string>();
      for (const statement of roles.flatMap(statementsOf)) {
        for (const action of [statement.Action].flat()) {
          const prefix = action.split(':')[0] ?? '';
          const why = NOT_CALLED_BY_THE_TASK[prefix];
          if (prefix === 'kms') assert.ok(statement.Condition?.['StringEquals']?.['kms:ViaService'] !== undefined, `${family}: ${action} without kms:ViaService`);
          if (why !== undefined) continue;
          const wanted = ENDPOINTS_OF[prefix];
          assert.ok(wanted !== undefined, `${family} may call ${action}, which has no VPC endpoint here, and the VPC no way to the internet`);
          for (const endpoint of wanted) needed.add(endpoint);
        }
      }
      for (const service of ['ecr.api', 'ecr.dkr', 's3', 'logs']) assert.ok(needed.has(service), `${family} pulls its image and logs: ${service}`);

      for (const service of needed) {
        const endpoint = endpoints.find((e) => e.service === service);
        assert.ok(endpoint !== undefined, `${family} needs the ${service} endpoint`);
        if (endpoint.gateway) {
          assert.ok(flows.has(`egress ${group} prefix-list tcp/443`), `${family}: ${group} to the S3 prefix list`);
          continue;
        }
        assert.ok(endpoint.groups.some((g) => flows.has(`egress ${group} ${g} tcp/443`) && flows.has(`ingress ${g} ${group} tcp/443`)), `${family}: ${group} to the ${service} endpoint (${endpoint.groups.join(', ')})`);
      }
    }
  });

  it('lets no task\'s security group reach out by address: its egress goes to another group or the S3 prefix list, never to a CIDR such as 0.0.0.0/0', () => {
    const names = groupNames();
    const taskGroups = new Set(ofType(resources, 'AWS::ECS::Service').flatMap(([, s]) =>
      refs((props(s)['NetworkConfiguration'] as { AwsvpcConfiguration: { SecurityGroups: unknown[] } }).AwsvpcConfiguration.SecurityGroups).map((g) => names.get(g) ?? g)));
    assert.equal(taskGroups.size, 8);
    const egress = securityGroupFlows(resources).filter((f) => f.direction === 'egress' && taskGroups.has(f.group));
    const byAddress = egress.filter((f) => !f.peer.startsWith('ca-a2a ') && f.peer !== 'prefix-list');
    assert.deepEqual(byAddress.map((f) => `${f.group} -> ${f.peer} ${f.port}`), []);
    assert.ok(egress.every((f) => f.port !== 'all' && !f.port.includes('-')), 'one port per rule');

    // The one prefix list is S3's, looked up by name in the stack's region.
    const prefixLists = new Set(ofType(resources, 'AWS::EC2::SecurityGroupEgress')
      .filter(([, r]) => props(r)['DestinationPrefixListId'] !== undefined)
      .map(([, r]) => referencedId(props(r)['DestinationPrefixListId'])));
    assert.equal(prefixLists.size, 1);
    const [lookup = ''] = prefixLists;
    assert.match(String(props(resources[lookup] as CfnResource)['Create']), /"Values":\["com\.amazonaws\.eu-west-3\.s3"\]/);
  });

  it('refuses the natGateways context value instead of ignoring it: the stack builds none', () => {
    assert.throws(() => createApp({ outdir, context: { natGateways: 2 } }), /natGateways is gone/);
  });
});
