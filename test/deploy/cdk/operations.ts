/**
 * What operators are given: the one-off tasks, logs and alerts.
 * Cases of test/deploy/cdk.test.ts, which calls `operationsTests()` and `alertsTests()` inside its
 * suite: not a `.test.ts` file, which the runner would give a process, and a synthesis of the
 * stack, of its own.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Template } from 'aws-cdk-lib/assertions';
import { ofType, props, referencedId, taskDefinitions, type Resources } from '../cfn.js';
import { defaultStack, sg } from './default-stack.js';

export function operationsTests(): void {
  describe('operations', () => {
    let resources: Resources;
    let template: Template;
    before(() => ({ resources, template } = defaultStack()));

    it('give an operator what a one-off revoke task of the admin task definition needs, and no ECS Exec', () => {
      const outputs = template.toJSON()['Outputs'] as Record<string, { Value: unknown }>;
      assert.equal(resources[referencedId(outputs['ClusterName']?.Value) ?? '']?.Type, 'AWS::ECS::Cluster');
      const network = JSON.stringify(outputs['AdminTaskNetwork']?.Value);
      const groupIds = new Map(ofType(resources, 'AWS::EC2::SecurityGroup').map(([id, g]) => [String(props(g)['GroupDescription']), id]));
      assert.ok(network.includes(`"${groupIds.get(sg('admin')) ?? '?'}"`), 'the admin security group: revocations database and Redis');
      const privateSubnets = ofType(resources, 'AWS::EC2::Subnet')
        .filter(([, s]) => ['10.0.10.0/24', '10.0.20.0/24'].includes(String(props(s)['CidrBlock']))).map(([id]) => id);
      assert.equal(privateSubnets.length, 2);
      for (const id of privateSubnets) assert.ok(network.includes(`"${id}"`), `private subnet ${id}`);
      assert.match(network, /assignPublicIp=DISABLED/);
      const adminApi = taskDefinitions(resources).get('ca-a2a-admin')?.containers.find((c) => c.Name === 'admin-api');
      assert.match(JSON.stringify(adminApi?.Secrets?.find((secret) => secret.Name === 'DATABASE_URL')?.ValueFrom), /RevocationsDbUrl/);
      for (const [, service] of ofType(resources, 'AWS::ECS::Service')) assert.notEqual(props(service)['EnableExecuteCommand'], true);
    });

    it('give every Lambda function a log group with a retention, created before the function runs', () => {
      const functions = ofType(resources, 'AWS::Lambda::Function').map(([id]) => id);
      assert.ok(functions.length > 0);
      const groups = ofType(resources, 'AWS::Logs::LogGroup');
      for (const fn of functions) {
        const group = groups.find(([, g]) => JSON.stringify(props(g)['LogGroupName'] ?? null).includes(`{"Ref":"${fn}"}`));
        assert.ok(group, `${fn} has a log group`);
        assert.equal(typeof props(group[1])['RetentionInDays'], 'number', `${fn} log group has a retention`);
      }
      const [[, restrict] = ['', { Type: '' }]] = ofType(resources, 'Custom::VpcRestrictDefaultSG');
      const dependsOn = [restrict.DependsOn ?? []].flat();
      assert.ok(dependsOn.some((id) => resources[id]?.Type === 'AWS::Logs::LogGroup'), 'the handler runs once its log group exists');
    });
  });
}

export function alertsTests(): void {
  describe('alerts', () => {
    let resources: Resources;
    let template: Template;
    before(() => ({ resources, template } = defaultStack()));

    it('route the alert rules Amazon Managed Prometheus evaluates to an SNS topic that only that workspace may publish to, named in the outputs', () => {
      const [[workspaceId, workspace] = ['', { Type: '' }]] = ofType(resources, 'AWS::APS::Workspace');
      template.resourceCountIs('AWS::APS::RuleGroupsNamespace', 1);
      // Without an alert manager definition the workspace evaluates the rules and tells no one.
      const definition = JSON.stringify(props(workspace)['AlertManagerDefinition'] ?? null);
      assert.match(definition, /alertmanager_config/);
      const topics = ofType(resources, 'AWS::SNS::Topic').map(([id]) => id);
      assert.equal(topics.length, 1);
      const topicId = topics[0] ?? '';
      assert.match(definition, new RegExp(`sns_configs[\\s\\S]*topic_arn[\\s\\S]*\\{"Ref":"${topicId}"\\}`), 'the receiver publishes to the stack\'s topic');
      assert.match(definition, /route[\s\S]*receiver/);
      assert.ok(props(resources[topicId] ?? { Type: '' })['KmsMasterKeyId'] !== undefined, 'the topic is encrypted');

      const [[, topicPolicy] = ['', { Type: '' }]] = ofType(resources, 'AWS::SNS::TopicPolicy');
      const statements = (props(topicPolicy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement;
      const aps = statements.filter((s) => s['Effect'] === 'Allow' && JSON.stringify(s['Principal']).includes('aps.amazonaws.com'));
      assert.equal(aps.length, 1);
      assert.match(JSON.stringify(aps[0]?.['Condition']), new RegExp(`"aws:SourceArn":\\{"Fn::GetAtt":\\["${workspaceId}","Arn"\\]\\}`), 'confused deputy: only this workspace');
      assert.ok(statements.some((s) => s['Effect'] === 'Deny' && JSON.stringify(s['Condition']).includes('"aws:SecureTransport":"false"')), 'TLS only');

      const outputs = template.toJSON()['Outputs'] as Record<string, { Value: unknown }>;
      assert.equal(referencedId(outputs['AlertsTopicArn']?.Value), topicId);
    });
  });
}
