/**
 * IAM: who may touch which secret, bucket, key and API.
 * Cases of test/deploy/cdk.test.ts, which calls `iamTests()` inside its suite: not a `.test.ts`
 * file, which the runner would give a process, and a synthesis of the stack, of its own.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { createApp } from '../../../deploy/cdk/app.js';
import { ofType, props, referencedId, taskDefinitions, type Resources } from '../cfn.js';
import { defaultStack, SECURED } from './default-stack.js';

export function iamTests(): void {
  describe('IAM', () => {
    let resources: Resources;
    before(() => ({ resources } = defaultStack()));

    /** Logical ids of the roles of one task family (task role and execution role). */
    const rolesOf = (family: string): Set<string> => {
      const task = taskDefinitions(resources).get(family);
      assert.ok(task);
      return new Set([props(task.resource)['TaskRoleArn'], props(task.resource)['ExecutionRoleArn']].map(referencedId).filter((id): id is string => id !== undefined));
    };
    /** Roles whose attached policies mention any of the given logical ids. */
    const rolesTouching = (predicate: (id: string) => boolean): Set<string> => {
      const ids = Object.keys(resources).filter(predicate);
      const roles = new Set<string>();
      for (const [, policy] of ofType(resources, 'AWS::IAM::Policy')) {
        const text = JSON.stringify(props(policy)['PolicyDocument']);
        if (!ids.some((id) => text.includes(`"${id}"`))) continue;
        for (const role of props(policy)['Roles'] as unknown[]) roles.add(referencedId(role) ?? '?');
      }
      return roles;
    };

    it('lets only the MCP task role touch the documents bucket and its key', () => {
      const bucketOrKey = (id: string): boolean => ['AWS::S3::Bucket', 'AWS::KMS::Key'].includes(resources[id]?.Type ?? '') && id.startsWith('DataDocuments');
      const roles = rolesTouching(bucketOrKey);
      const mcpTaskRole = referencedId(props(taskDefinitions(resources).get('ca-a2a-mcp')?.resource ?? { Type: '' })['TaskRoleArn']);
      assert.deepEqual([...roles], [mcpTaskRole]);
    });

    it('gives every sidecar the revocations database as revocations_reader, and its owner\'s URL only to the admin API and the migrate step that runs before it', () => {
      const tasks = taskDefinitions(resources);
      const secretOf = (family: string, container: string, name: string): string | undefined =>
        referencedId(tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets?.find((secret) => secret.Name === name)?.ValueFrom);
      const reader = secretOf('ca-a2a-admin', 'revocations-migrate', 'CA_A2A_REVOCATIONS_READER_URL');
      const owner = secretOf('ca-a2a-admin', 'revocations-migrate', 'DATABASE_URL');
      assert.ok(reader && owner && reader !== owner);
      for (const service of SECURED) assert.equal(secretOf(`ca-a2a-${service}`, 'sidecar', 'DATABASE_URL'), reader, `${service} sidecar`);
      assert.equal(secretOf('ca-a2a-admin', 'admin-api', 'DATABASE_URL'), owner);
      const url = (id: string): string => JSON.stringify(props(resources[id] ?? { Type: '' })['SecretString']);
      assert.match(url(reader), /postgres:\/\/revocations_reader:.*\/revocations\?sslmode=verify-full/);
      assert.match(url(owner), /postgres:\/\/revocations:/);
      // Run to completion before the admin API starts, which does not start if it failed.
      const admin = tasks.get('ca-a2a-admin')?.containers ?? [];
      const migrate = admin.find((c) => c.Name === 'revocations-migrate');
      assert.equal(migrate?.Essential, false);
      assert.deepEqual(migrate?.Command, ['revoke', 'migrate']);
      assert.match(JSON.stringify(migrate?.Image), /\/ca-a2a:/);
      assert.deepEqual(admin.find((c) => c.Name === 'admin-api')?.DependsOn, [{ ContainerName: 'revocations-migrate', Condition: 'SUCCESS' }]);
      // Only the admin task's roles may read the owner's URL and the master secret.
      const ownerSecrets = (id: string): boolean => id === owner
        || (resources[id]?.Type === 'AWS::SecretsManager::Secret' && /^DataRevocationsDbCluster/.test(id))
        || (resources[id]?.Type === 'AWS::SecretsManager::SecretTargetAttachment' && /^DataRevocationsDb/.test(id));
      const touching = rolesTouching(ownerSecrets);
      const adminRoles = rolesOf('ca-a2a-admin');
      assert.ok(touching.size > 0 && [...touching].every((role) => adminRoles.has(role)), [...touching].join());
    });

    it('lets only the MCP task read the documents database secrets, and only Keycloak its own', () => {
      const secret = (prefix: string) => (id: string): boolean =>
        ['AWS::SecretsManager::Secret', 'AWS::SecretsManager::SecretTargetAttachment'].includes(resources[id]?.Type ?? '') && (id.startsWith(prefix) || id.startsWith(`CaA2a${prefix}`));
      const mcp = rolesOf('ca-a2a-mcp');
      const documents = rolesTouching(secret('DataDocumentsDb'));
      assert.ok(documents.size > 0 && [...documents].every((role) => mcp.has(role)), [...documents].join());
      const keycloak = rolesOf('ca-a2a-keycloak');
      const keycloakDb = rolesTouching(secret('DataKeycloakDb'));
      assert.ok(keycloakDb.size > 0 && [...keycloakDb].every((role) => keycloak.has(role)), [...keycloakDb].join());
    });

    it('pulls the collector image from ECR Public through this account\'s ECR (a pull-through cache rule), whose repository alone the scraper may create', () => {
      const [[, rule] = ['', { Type: '' }], ...more] = ofType(resources, 'AWS::ECR::PullThroughCacheRule');
      assert.equal(more.length, 0);
      assert.deepEqual([props(rule)['UpstreamRegistryUrl'], props(rule)['EcrRepositoryPrefix']], ['public.ecr.aws', 'ca-a2a-ecr-public']);
      const collector = taskDefinitions(resources).get('ca-a2a-metrics-scraper')?.containers.find((c) => c.Name === 'collector');
      const image = JSON.stringify(collector?.Image);
      assert.match(image, /\.dkr\.ecr\..*\/ca-a2a-ecr-public\/aws-observability\/aws-otel-collector:v0\.43\.3/);
      assert.doesNotMatch(image, /"public\.ecr\.aws/);
      const imports = ofType(resources, 'AWS::IAM::Policy').flatMap(([, policy]) =>
        (props(policy)['PolicyDocument'] as { Statement: Array<{ Action: unknown; Resource: unknown }> }).Statement
          .filter((statement) => JSON.stringify(statement.Action).includes('ecr:BatchImportUpstreamImage')));
      assert.equal(imports.length, 1);
      assert.match(JSON.stringify(imports[0]?.Resource), /repository\/ca-a2a-ecr-public\/aws-observability\/aws-otel-collector"/);
      const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-collector-'));
      try {
        assert.throws(() => createApp({ outdir: dir, context: { collectorImage: 'otel/opentelemetry-collector:0.1' } }), /context collectorImage must be public\.ecr\.aws/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('holds the metrics scraper\'s describe calls to this cluster', () => {
      const scraper = rolesOf('ca-a2a-metrics-scraper');
      const statements = ofType(resources, 'AWS::IAM::Policy')
        .filter(([, policy]) => (props(policy)['Roles'] as unknown[]).some((role) => scraper.has(referencedId(role) ?? '')))
        .flatMap(([, policy]) => (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement);
      const describe = statements.filter((s) => [s['Action']].flat().some((a) => /^ecs:Describe(Tasks|Services|ContainerInstances)$/.test(String(a))));
      assert.equal(describe.length, 1);
      const arns = [describe[0]?.['Resource']].flat().map((r) => JSON.stringify(r));
      assert.equal(arns.length, 3);
      const [[clusterId] = ['']] = ofType(resources, 'AWS::ECS::Cluster');
      for (const kind of ['task', 'service', 'container-instance']) {
        assert.ok(arns.some((arn) => arn.includes(`:${kind}/",{"Ref":"${clusterId}"},"/*"]]}`)), `${kind}: ${arns.join(' ')}`);
      }
      const wildcard = statements.filter((s) => s['Resource'] === '*').flatMap((s) => [s['Action']].flat()).map(String).sort();
      // ecr:GetAuthorizationToken (no resource-level permission either): its execution role pulls our image, for the scratch opener.
      assert.deepEqual(wildcard, ['ec2:DescribeInstances', 'ecr:GetAuthorizationToken', 'ecs:DescribeTaskDefinition', 'ecs:ListServices', 'ecs:ListTasks']);
    });

    it('names every action of every IAM policy: no wildcard actions', () => {
      for (const [id, policy] of ofType(resources, 'AWS::IAM::Policy')) {
        for (const statement of (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement) {
          for (const action of [statement['Action']].flat()) assert.doesNotMatch(String(action), /\*/, `${id}: ${String(action)}`);
        }
      }
    });

    it('grants the MCP task role the objects under its S3 prefixes only, no version deletes, and the key only through S3', () => {
      const mcp = taskDefinitions(resources).get('ca-a2a-mcp');
      const taskRole = referencedId(props(mcp?.resource ?? { Type: '' })['TaskRoleArn']);
      const statements = ofType(resources, 'AWS::IAM::Policy')
        .filter(([, policy]) => (props(policy)['Roles'] as unknown[]).some((role) => referencedId(role) === taskRole))
        .flatMap(([, policy]) => (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement);
      const prefixes = mcp?.containers.find((c) => c.Name === 'mcp-gateway')?.Environment?.find((e) => e.Name === 'CA_A2A_S3_PREFIXES')?.Value;
      assert.equal(prefixes, 'uploads/,archive/', 'the gateway is told the prefixes its role is scoped to');
      const objectStatements = statements.filter((s) => [s['Action']].flat().some((a) => /^s3:.*Object/.test(String(a))));
      assert.deepEqual(objectStatements.flatMap((s) => [s['Action']].flat()).sort(), ['s3:DeleteObject', 's3:GetObject', 's3:PutObject']);
      const objectArns = objectStatements.flatMap((s) => [s['Resource']].flat()).map((r) => JSON.stringify(r)).sort();
      assert.deepEqual(objectArns.map((arn) => /"(\/[^"]*)"\]\]\}$/.exec(arn)?.[1]), ['/archive/*', '/uploads/*']);
      const kms = statements.filter((s) => [s['Action']].flat().some((a) => String(a).startsWith('kms:')));
      assert.equal(kms.length, 1);
      assert.deepEqual([kms[0]?.['Action']].flat().sort(), ['kms:Decrypt', 'kms:GenerateDataKey']);
      assert.deepEqual(kms[0]?.['Condition'], { StringEquals: { 'kms:ViaService': 's3.eu-west-3.amazonaws.com' } });
      const all = statements.flatMap((s) => [s['Action']].flat()).map(String);
      assert.deepEqual(all.filter((a) => !['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:ListBucket', 'kms:Decrypt', 'kms:GenerateDataKey'].includes(a)), []);
    });

    it('limits the S3 endpoint to ECR layers and, for the documents bucket, to the MCP task role', () => {
      const [endpoint] = ofType(resources, 'AWS::EC2::VPCEndpoint').filter(([, e]) => props(e)['VpcEndpointType'] === 'Gateway');
      const statements = (props(endpoint?.[1] ?? { Type: '' })['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement;
      const documents = statements.find((s) => s['Sid'] === 'DocumentsBucketMcpOnly');
      const mcpTaskRole = referencedId(props(taskDefinitions(resources).get('ca-a2a-mcp')?.resource ?? { Type: '' })['TaskRoleArn']);
      assert.equal(referencedId((documents?.['Principal'] as { AWS: unknown }).AWS), mcpTaskRole);
      assert.deepEqual(statements.map((s) => s['Sid']).sort(), ['DocumentsBucketMcpOnly', 'EcrImageLayers']);
    });
  });
}
