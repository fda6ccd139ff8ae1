import { Fn, SecretValue } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { PRIVATE_SUBNET_SELECTION } from './network.js';
import { redisAclRules, type RedisUser } from './redis-acl.js';

export interface RedisProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly nodeType: string;
}

/**
 * The sidecars' shared state (replay ids, rate-limit windows, revocation cache): a two-node
 * ElastiCache Redis group with TLS in transit, encryption at rest, no eviction, and one ACL user
 * per party (RBAC user group): the sidecars and the admin API each get only the commands and
 * keys of deploy/cdk/redis-acl.ts, where one AUTH token gave every holder all of Redis.
 */
export class Redis extends Construct {
  readonly group: elasticache.CfnReplicationGroup;
  readonly userGroup: elasticache.CfnUserGroup;
  readonly users: Readonly<Record<RedisUser, elasticache.CfnUser>>;
  /** `rediss://ca-a2a-sidecar:PASSWORD@primary:6379`, REDIS_URL of every sidecar. */
  readonly sidecarUrl: secretsmanager.Secret;
  /** `rediss://ca-a2a-admin:PASSWORD@primary:6379`, REDIS_URL of the admin API (revocation pushes). */
  readonly adminUrl: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: RedisProps) {
    super(scope, id);
    const subnets = new elasticache.CfnSubnetGroup(this, 'Subnets', {
      description: 'ca-a2a Redis, private subnets',
      subnetIds: props.vpc.selectSubnets(PRIVATE_SUBNET_SELECTION).subnetIds,
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

    // A user group must hold a user named `default`, which is who a connection is before AUTH:
    // switched off, with no command, and a password nobody is given.
    const nobody = this.#user('Default', 'ca-a2a-default', 'default', ['off', '-@all']);
    const sidecar = this.#user('Sidecar', 'ca-a2a-sidecar', 'ca-a2a-sidecar', redisAclRules('sidecar'));
    const admin = this.#user('Admin', 'ca-a2a-admin', 'ca-a2a-admin', redisAclRules('admin'));
    this.users = { sidecar: sidecar.user, admin: admin.user };
    this.userGroup = new elasticache.CfnUserGroup(this, 'Users', {
      engine: 'redis',
      userGroupId: 'ca-a2a',
      userIds: [nobody.user.ref, sidecar.user.ref, admin.user.ref],
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
      userGroupIds: [this.userGroup.ref],
      port: 6379,
    });

    this.sidecarUrl = this.#url('SidecarUrl', 'REDIS_URL for the ca-a2a sidecars', sidecar);
    this.adminUrl = this.#url('AdminUrl', 'REDIS_URL for the ca-a2a admin API', admin);
  }

  #user(id: string, userId: string, userName: string, rules: readonly string[]): { user: elasticache.CfnUser; password: secretsmanager.Secret } {
    // ElastiCache passwords: 16 to 128 printable characters, none of , " / @ (and none that a URL would need escaped).
    const password = new secretsmanager.Secret(this, `${id}Password`, {
      description: `ca-a2a Redis password of ${userName}`,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    const user = new elasticache.CfnUser(this, `${id}User`, {
      engine: 'redis',
      userId,
      userName,
      accessString: rules.join(' '),
      passwords: [password.secretValue.unsafeUnwrap()],
    });
    return { user, password };
  }

  #url(id: string, description: string, party: { user: elasticache.CfnUser; password: secretsmanager.Secret }): secretsmanager.Secret {
    return new secretsmanager.Secret(this, id, {
      description,
      secretStringValue: SecretValue.unsafePlainText(
        Fn.join('', [
          `rediss://${party.user.userName}:`, party.password.secretValue.unsafeUnwrap(),
          '@', this.group.attrPrimaryEndPointAddress, ':', this.group.attrPrimaryEndPointPort,
        ]),
      ),
    });
  }
}
