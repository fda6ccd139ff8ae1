import { Fn, SecretValue } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

export interface RedisProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly nodeType: string;
}

/**
 * The sidecars' shared state (replay ids, rate-limit windows, revocation cache): a two-node
 * ElastiCache Redis group with TLS in transit, encryption at rest, an AUTH token, and no eviction.
 */
export class Redis extends Construct {
  readonly group: elasticache.CfnReplicationGroup;
  readonly authToken: secretsmanager.Secret;
  /** `rediss://:TOKEN@primary:6379`, for REDIS_URL. */
  readonly urlSecret: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: RedisProps) {
    super(scope, id);
    // ElastiCache AUTH tokens allow only printable characters other than @, " and /.
    this.authToken = new secretsmanager.Secret(this, 'AuthToken', {
      description: 'ca-a2a Redis AUTH token',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });

    const subnets = new elasticache.CfnSubnetGroup(this, 'Subnets', {
      description: 'ca-a2a Redis, private subnets',
      subnetIds: props.vpc.privateSubnets.map((subnet) => subnet.subnetId),
    });

    // ElastiCache's default policy, volatile-lru, evicts keys that have a TTL when memory runs
    // out, and every key the sidecars write has one: a full Redis would silently forget replay
    // ids (a captured proof accepted again), rate-limit windows and revocations. With noeviction
    // a full Redis refuses the write, and the sidecars answer 503 (fail closed).
    const parameters = new elasticache.CfnParameterGroup(this, 'Parameters', {
      description: 'ca-a2a Redis: refuse writes when full instead of evicting',
      cacheParameterGroupFamily: 'redis7',
      properties: { 'maxmemory-policy': 'noeviction' },
    });

    this.group = new elasticache.CfnReplicationGroup(this, 'Group', {
      replicationGroupDescription: 'ca-a2a sidecar shared state',
      engine: 'redis',
      engineVersion: '7.1',
      cacheParameterGroupName: parameters.ref,
      cacheNodeType: props.nodeType,
      numCacheClusters: 2,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      cacheSubnetGroupName: subnets.ref,
      securityGroupIds: [props.securityGroup.securityGroupId],
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      authToken: this.authToken.secretValue.unsafeUnwrap(),
      port: 6379,
    });

    this.urlSecret = new secretsmanager.Secret(this, 'Url', {
      description: 'REDIS_URL for the ca-a2a sidecars',
      secretStringValue: SecretValue.unsafePlainText(
        Fn.join('', [
          'rediss://:', this.authToken.secretValue.unsafeUnwrap(),
          '@', this.group.attrPrimaryEndPointAddress, ':', this.group.attrPrimaryEndPointPort,
        ]),
      ),
    });
  }
}
