/**
 * The data stores: Aurora, Redis, the documents bucket.
 * Cases of test/deploy/cdk.test.ts, which calls `dataTests()` inside its suite: not a `.test.ts`
 * file, which the runner would give a process, and a synthesis of the stack, of its own.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { redisAclRules } from '../../../deploy/cdk/redis-acl.js';
import { ofType, props, referencedId, taskDefinitions, type Resources } from '../cfn.js';
import { defaultStack, SECURED, sg } from './default-stack.js';

export function dataTests(): void {
  describe('data', () => {
    let resources: Resources;
    let template: Template;
    before(() => ({ resources, template } = defaultStack()));

    it('runs encrypted Aurora PostgreSQL with 7-day backups: one cluster for MCP, one for Keycloak, one for revocations', () => {
      const clusters = ofType(resources, 'AWS::RDS::DBCluster');
      assert.equal(clusters.length, 3);
      const names = new Map(ofType(resources, 'AWS::EC2::SecurityGroup').map(([id, g]) => [id, String(props(g)['GroupDescription'])]));
      const groups = clusters.map(([, c]) => {
        assert.equal(props(c)['Engine'], 'aurora-postgresql');
        assert.equal(props(c)['StorageEncrypted'], true);
        assert.equal(props(c)['BackupRetentionPeriod'], 7);
        return (props(c)['VpcSecurityGroupIds'] as unknown[]).map((v) => names.get(referencedId(v) ?? '')).join();
      });
      assert.deepEqual(groups.sort(), [sg('documentsDb'), sg('keycloakDb'), sg('revocationsDb')].sort());
    });

    it('runs Redis with TLS and encryption at rest, and one ACL user per party instead of one AUTH token for all', () => {
      template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
        TransitEncryptionEnabled: true,
        TransitEncryptionMode: 'required',
        AtRestEncryptionEnabled: true,
      });
      const [[, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElastiCache::ReplicationGroup');
      assert.equal(props(group)['AuthToken'], undefined, 'no token that opens every command');
      const userGroups = props(group)['UserGroupIds'] as unknown[];
      assert.equal(userGroups.length, 1);
      const userGroup = resources[referencedId(userGroups[0]) ?? ''];
      assert.equal(userGroup?.Type, 'AWS::ElastiCache::UserGroup');
      const members = (props(userGroup ?? { Type: '' })['UserIds'] as unknown[]).map((ref) => resources[referencedId(ref) ?? '']);
      const byName = new Map(members.map((user) => [String(props(user ?? { Type: '' })['UserName']), props(user ?? { Type: '' })]));
      assert.deepEqual([...byName.keys()].sort(), ['ca-a2a-admin', 'ca-a2a-sidecar', 'default']);
      // Exactly the rules test/deploy/redis-acl.test.ts runs the real stores on.
      assert.equal(byName.get('ca-a2a-sidecar')?.['AccessString'], redisAclRules('sidecar').join(' '));
      assert.equal(byName.get('ca-a2a-admin')?.['AccessString'], redisAclRules('admin').join(' '));
      assert.equal(byName.get('default')?.['AccessString'], 'off -@all');
      for (const user of byName.values()) assert.match(JSON.stringify(user['Passwords']), /\{\{resolve:secretsmanager:/);
      // Every sidecar on the sidecar user; the admin API, alone, on the admin user.
      const tasks = taskDefinitions(resources);
      const redisSecret = (family: string, container: string): string | undefined =>
        referencedId(tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets?.find((secret) => secret.Name === 'REDIS_URL')?.ValueFrom);
      const url = (id: string | undefined): string => JSON.stringify(props(resources[id ?? ''] ?? { Type: '' })['SecretString']);
      for (const service of SECURED) assert.match(url(redisSecret(`ca-a2a-${service}`, 'sidecar')), /"rediss:\/\/ca-a2a-sidecar:/, service);
      assert.match(url(redisSecret('ca-a2a-admin', 'admin-api')), /"rediss:\/\/ca-a2a-admin:/);
      const holders = [...tasks.values()].flatMap((task) => task.containers.filter((c) => (c.Secrets ?? []).some((secret) => referencedId(secret.ValueFrom) === redisSecret('ca-a2a-admin', 'admin-api'))).map((c) => c.Name));
      assert.deepEqual(holders, ['admin-api']);
    });

    it('never lets Redis evict: a full Redis refuses writes (the sidecars fail closed) instead of forgetting replay ids', () => {
      const [[, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElastiCache::ReplicationGroup');
      const parameters = resources[referencedId(props(group)['CacheParameterGroupName']) ?? ''];
      assert.ok(parameters, 'the group names a parameter group of the stack');
      assert.equal(parameters.Type, 'AWS::ElastiCache::ParameterGroup');
      assert.equal(props(parameters)['CacheParameterGroupFamily'], 'redis7');
      assert.deepEqual(props(parameters)['Properties'], { 'maxmemory-policy': 'noeviction' });
    });

    it('keeps documents in a versioned, encrypted, private, TLS-only, access-logged bucket', () => {
      template.hasResourceProperties('AWS::S3::Bucket', {
        VersioningConfiguration: { Status: 'Enabled' },
        BucketEncryption: { ServerSideEncryptionConfiguration: [Match.objectLike({ ServerSideEncryptionByDefault: Match.objectLike({ SSEAlgorithm: 'aws:kms' }) })] },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        LoggingConfiguration: Match.objectLike({ DestinationBucketName: Match.anyValue() }),
      });
      for (const [id, policy] of ofType(resources, 'AWS::S3::BucketPolicy')) {
        const statements = (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement;
        assert.ok(statements.some((s) => s['Effect'] === 'Deny' && JSON.stringify(s['Condition']).includes('"aws:SecureTransport":"false"')), `${id} refuses plain HTTP`);
      }
    });
  });
}
