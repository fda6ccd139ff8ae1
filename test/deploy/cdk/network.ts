/**
 * What reaches what: the security groups and the public ingress (ALB, WAF).
 * Cases of test/deploy/cdk.test.ts, which calls `securityGroupTests()` and `ingressTests()` inside
 * its suite: not a `.test.ts` file, which the runner would give a process, and a synthesis of the
 * stack, of its own.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Template } from 'aws-cdk-lib/assertions';
import { ofType, props, referencedId, securityGroupFlows, type Resources } from '../cfn.js';
import { AGENTS, defaultStack, SECURED, SIDECAR_PORTS, sg } from './default-stack.js';

export function securityGroupTests(): void {
  describe('security groups', () => {
    let resources: Resources;
    before(() => ({ resources } = defaultStack()));

    it('allow exactly the planned flows between groups and nothing else', () => {
      const expected = new Set<string>();
      const allow = (from: string, to: string, port: number): void => {
        expected.add(`egress ${sg(from)} -> ${sg(to)} tcp/${port}`);
        expected.add(`ingress ${sg(to)} <- ${sg(from)} tcp/${port}`);
      };
      allow('alb', 'orchestrator', 8001);
      for (const to of ['extractor', 'validator', 'archivist'] as const) allow('orchestrator', to, SIDECAR_PORTS[to]);
      for (const from of AGENTS) allow(from, 'mcp', 8000);
      allow('mcp', 'documentsDb', 5432);
      allow('keycloak', 'keycloakDb', 5432);
      for (const port of [7800, 57800]) allow('keycloak', 'keycloak', port);
      for (const from of SECURED) allow(from, 'revocationsDb', 5432);
      for (const from of SECURED) allow(from, 'redis', 6379);
      for (const from of SECURED) allow(from, 'keycloak', 8080);
      for (const to of SECURED) allow('scraper', to, 9090);
      for (const from of [...SECURED, 'keycloak', 'scraper']) allow(from, 'interface endpoints', 443);
      allow('scraper', 'scraper endpoints', 443);

      const actual = new Set(securityGroupFlows(resources)
        .filter((f) => f.peer.startsWith('ca-a2a '))
        .map((f) => (f.direction === 'egress' ? `egress ${f.group} -> ${f.peer} ${f.port}` : `ingress ${f.group} <- ${f.peer} ${f.port}`)));
      assert.deepEqual([...actual].filter((x) => !expected.has(x)).sort(), [], 'unexpected flows');
      assert.deepEqual([...expected].filter((x) => !actual.has(x)).sort(), [], 'missing flows');
    });

    it('open 0.0.0.0/0 only as the ALB\'s HTTPS ingress: nothing reaches out to the internet, the scraper included', () => {
      const world = securityGroupFlows(resources).filter((f) => f.peer === '0.0.0.0/0' || f.peer === '::/0');
      assert.deepEqual(world.map((f) => `${f.direction} ${f.group} ${f.port}`).sort(), ['ingress ca-a2a alb tcp/443']);
      // What is left of the scraper's egress: the sidecars' admin port, its endpoints and S3's prefix list.
      const scraper = securityGroupFlows(resources).filter((f) => f.direction === 'egress' && f.group === sg('scraper'));
      assert.deepEqual([...new Set(scraper.map((f) => `${f.peer} ${f.port}`))].sort(), [
        ...SECURED.map((s) => `${sg(s)} tcp/9090`), `${sg('interface endpoints')} tcp/443`, `${sg('scraper endpoints')} tcp/443`, 'prefix-list tcp/443',
      ].sort());
    });

    it('leave no group with default allow-all egress', () => {
      for (const [id, group] of ofType(resources, 'AWS::EC2::SecurityGroup')) {
        const egress = (props(group)['SecurityGroupEgress'] as Array<Record<string, unknown>> | undefined) ?? [];
        assert.ok(!egress.some((rule) => rule['IpProtocol'] === '-1'), `${id} allows all outbound`);
      }
      const standalone = new Set(ofType(resources, 'AWS::EC2::SecurityGroupEgress').map(([, r]) => referencedId(props(r)['GroupId'])));
      for (const [id, group] of ofType(resources, 'AWS::EC2::SecurityGroup')) {
        // Without any egress rule CloudFormation would keep EC2's allow-all default.
        assert.ok(props(group)['SecurityGroupEgress'] !== undefined || standalone.has(id), `${id} has no egress rule at all`);
      }
    });

    it('admit the sidecar admin port from the scraper only and never expose the egress port', () => {
      const flows = securityGroupFlows(resources);
      const admin = flows.filter((f) => f.direction === 'ingress' && f.port === 'tcp/9090');
      assert.ok(admin.length === SECURED.length && admin.every((f) => f.peer === sg('scraper')));
      assert.deepEqual(flows.filter((f) => f.port.includes('15001')), []);
      assert.deepEqual(flows.filter((f) => f.direction === 'egress' && f.group === sg('alb')).map((f) => `${f.peer} ${f.port}`), [`${sg('orchestrator')} tcp/8001`]);
    });
  });
}

export function ingressTests(): void {
  describe('ingress', () => {
    let resources: Resources;
    let template: Template;
    before(() => ({ resources, template } = defaultStack()));

    it('terminates HTTPS with the certificate parameter and forwards to the orchestrator sidecar only', () => {
      template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
        Protocol: 'HTTPS',
        Port: 443,
        Certificates: [{ CertificateArn: { Ref: 'CertificateArn' } }],
      });
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Scheme: 'internet-facing' });
      template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 1);
      template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { Port: 8001, TargetType: 'ip', HealthCheckPath: '/health' });
      const [orchestrator] = ofType(resources, 'AWS::ECS::Service').filter(([, s]) => props(s)['ServiceName'] === 'ca-a2a-orchestrator');
      assert.deepEqual((orchestrator?.[1].Properties?.['LoadBalancers'] as Array<Record<string, unknown>>).map((lb) => [lb['ContainerName'], lb['ContainerPort']]), [['sidecar', 8001]]);
      for (const [, service] of ofType(resources, 'AWS::ECS::Service')) {
        if (props(service)['ServiceName'] !== 'ca-a2a-orchestrator') assert.deepEqual(props(service)['LoadBalancers'] ?? [], []);
      }
    });

    it('speaks TLS to the orchestrator\'s port, requests and health checks, where Service Connect TLS puts a TLS 1.3-only proxy', () => {
      const [[, orchestrator] = ['', { Type: '' }]] = ofType(resources, 'AWS::ECS::Service').filter(([, s]) => props(s)['ServiceName'] === 'ca-a2a-orchestrator');
      const connect = props(orchestrator)['ServiceConnectConfiguration'] as { Services: Array<{ PortName: string; Tls?: unknown; IngressPortOverride?: unknown }> };
      // The proxy answers on the container port itself (no ingress port override), with TLS on.
      assert.deepEqual(connect.Services.map((s) => [s.PortName, s.Tls !== undefined, s.IngressPortOverride]), [['orchestrator', true, undefined]]);
      const [[, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElasticLoadBalancingV2::TargetGroup');
      assert.equal(props(group)['Port'], 8001);
      assert.equal(props(group)['Protocol'], 'HTTPS', 'plain HTTP to a TLS-only proxy fails every request');
      // Not the group's protocol by default: ELBv2 health-checks an ALB target over HTTP unless told.
      assert.equal(props(group)['HealthCheckProtocol'], 'HTTPS', 'plain HTTP health checks would fail, and ECS replace every task');
      const [[, listener] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElasticLoadBalancingV2::Listener');
      assert.match(String(props(listener)['SslPolicy']), /^ELBSecurityPolicy-TLS13-/, 'a TLS 1.3 policy, which the ALB needs to reach TLS 1.3-only targets');
    });

    it('logs every request to the SSE-S3 access-logs bucket, under alb/', () => {
      const [[, alb] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
      const attributes = new Map((props(alb)['LoadBalancerAttributes'] as Array<{ Key: string; Value: unknown }>).map((a) => [a.Key, a.Value]));
      assert.equal(attributes.get('access_logs.s3.enabled'), 'true');
      assert.equal(attributes.get('access_logs.s3.prefix'), 'alb');
      const bucketId = referencedId(attributes.get('access_logs.s3.bucket'));
      assert.ok(bucketId?.startsWith('DataAccessLogs'), String(bucketId));
      const encryption = JSON.stringify(props(resources[bucketId ?? ''] ?? { Type: '' })['BucketEncryption']);
      assert.match(encryption, /"SSEAlgorithm":"AES256"/, 'ALB access logs need SSE-S3');
    });

    it('puts a WAF web ACL in front of the ALB: IP reputation, known bad inputs, a per-address rate', () => {
      const [[aclId, acl] = ['', { Type: '' }]] = ofType(resources, 'AWS::WAFv2::WebACL');
      assert.equal(props(acl)['Scope'], 'REGIONAL');
      assert.deepEqual(props(acl)['DefaultAction'], { Allow: {} });
      const rules = props(acl)['Rules'] as Array<Record<string, unknown>>;
      assert.deepEqual(rules.map((r) => r['Name']), ['AWSManagedRulesAmazonIpReputationList', 'AWSManagedRulesKnownBadInputsRuleSet', 'PerAddressRate']);
      const rate = rules[2]?.['Statement'] as { RateBasedStatement: Record<string, unknown> };
      assert.deepEqual(rate.RateBasedStatement, { Limit: 6000, EvaluationWindowSec: 300, AggregateKeyType: 'IP' });
      assert.deepEqual(rules[2]?.['Action'], { Block: {} });
      const [[, association] = ['', { Type: '' }]] = ofType(resources, 'AWS::WAFv2::WebACLAssociation');
      const [[albId] = ['']] = ofType(resources, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
      assert.equal(referencedId(props(association)['ResourceArn']), albId);
      assert.deepEqual(props(association)['WebACLArn'], { 'Fn::GetAtt': [aclId, 'Arn'] });
    });

    it('logs what the web ACL blocks to an aws-waf-logs- group, credentials redacted, allowed requests dropped', () => {
      const [[aclId] = ['']] = ofType(resources, 'AWS::WAFv2::WebACL');
      const [[groupId, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::Logs::LogGroup').filter(([, g]) => String(props(g)['LogGroupName']).startsWith('aws-waf-logs-'));
      assert.equal(props(group)['LogGroupName'], 'aws-waf-logs-ca-a2a-ingress');
      assert.equal(props(group)['RetentionInDays'], 30);
      const [[, logging] = ['', { Type: '' }]] = ofType(resources, 'AWS::WAFv2::LoggingConfiguration');
      assert.deepEqual(props(logging)['ResourceArn'], { 'Fn::GetAtt': [aclId, 'Arn'] });
      const destination = JSON.stringify(props(logging)['LogDestinationConfigs']);
      assert.match(destination, /:log-group:aws-waf-logs-ca-a2a-ingress"/, 'the log group ARN, without the :* suffix WAF refuses');
      assert.ok([logging.DependsOn ?? []].flat().includes(groupId), 'created after its log group');
      const redacted = (props(logging)['RedactedFields'] as Array<{ SingleHeader: { Name: string } }>).map((f) => f.SingleHeader.Name);
      assert.deepEqual(redacted.sort(), ['authorization', 'cookie', 'dpop']);
      assert.deepEqual(props(logging)['LoggingFilter'], {
        DefaultBehavior: 'DROP',
        Filters: [{ Behavior: 'KEEP', Requirement: 'MEETS_ANY', Conditions: [{ ActionCondition: { Action: 'BLOCK' } }, { ActionCondition: { Action: 'COUNT' } }] }],
      });
    });
  });
}
