import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { createApp } from '../../deploy/cdk/app.js';
import { dataTests } from './cdk/data.js';
import { defaultStack } from './cdk/default-stack.js';
import { iamTests } from './cdk/iam.js';
import { keycloakTests } from './cdk/keycloak.js';
import { ingressTests, securityGroupTests } from './cdk/network.js';
import { alertsTests, operationsTests } from './cdk/operations.js';
import { taskTests } from './cdk/tasks.js';

// One process, one synthesis of the default stack (./cdk/default-stack.ts) for every suite below;
// the suites live in ./cdk/ by subject.
describe('deploy/cdk stack', () => {
  let template: Template;
  let annotations: Annotations;
  let missingContext: unknown;

  before(() => ({ template, annotations, missingContext } = defaultStack()));

  it('synthesises offline: no context lookups, region defaults to eu-west-3, no error annotations', () => {
    assert.equal(missingContext, undefined);
    annotations.hasNoError('*', Match.anyValue());
    const json = JSON.stringify(template.toJSON());
    assert.match(json, /eu-west-3/);
    template.hasParameter('CertificateArn', { Type: 'String' });
    // No placeholder: a deploy that does not say its public URL fails, instead of refusing every DPoP call.
    template.hasParameter('PublicUrl', { Type: 'String', Default: Match.absent() });
    template.hasParameter('ImageTag', { Type: 'String', Default: Match.anyValue() });
  });

  securityGroupTests();
  taskTests();
  keycloakTests();
  operationsTests();
  alertsTests();
  ingressTests();
  dataTests();
  iamTests();

  it('takes operator choices from context', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-ctx-'));
    try {
      const { stack } = createApp({ outdir: dir, context: { region: 'eu-central-1', 'desiredCount.orchestrator': '4', desiredCount: 1, imageRepository: 'acme/ca-a2a', wafRateLimit: '1200' } });
      const other = Template.fromStack(stack);
      assert.equal(stack.region, 'eu-central-1');
      other.hasResourceProperties('AWS::ECS::Service', { ServiceName: 'ca-a2a-orchestrator', DesiredCount: 4 });
      other.hasResourceProperties('AWS::ECS::Service', { ServiceName: 'ca-a2a-extractor', DesiredCount: 1 });
      other.hasResourceProperties('AWS::WAFv2::WebACL', { Rules: Match.arrayWith([Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: 1200 }) } })]) });
      assert.match(JSON.stringify(other.toJSON()), /acme\/ca-a2a:/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
