import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { SERVICE_PORTS } from './config.js';

export interface IngressProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly certificateArn: string;
  readonly orchestrator: ecs.FargateService;
  /** SSE-S3 bucket the ALB writes its access logs to (under `alb/`). */
  readonly accessLogs: s3.IBucket;
  /** Requests one client IP may send in 5 minutes before the web ACL blocks it. */
  readonly wafRateLimit: number;
  /** How long the web ACL's log of blocked requests is kept. */
  readonly logRetention: logs.RetentionDays;
}

/** WAF writes only to a log group whose name starts with `aws-waf-logs-`. */
export const WAF_LOG_GROUP = 'aws-waf-logs-ca-a2a-ingress';

/**
 * The internet-facing ALB: HTTPS only, forwarding to the orchestrator sidecar and nothing else.
 * Its health check uses the public `GET /health` route on the traffic port, because the sidecar's
 * admin listener (/ready) is closed to the ALB by design. It logs every request to S3 and sits
 * behind a WAF web ACL that drops known-bad sources and inputs and floods from one address before
 * they cost a task anything; authentication, authorization and per-caller limits stay the sidecar's.
 */
export class Ingress extends Construct {
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;

  constructor(scope: Construct, id: string, props: IngressProps) {
    super(scope, id);
    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'Alb', {
      vpc: props.vpc,
      internetFacing: true,
      securityGroup: props.securityGroup,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      // Rejects header names the sidecar would refuse anyway, before they reach a task.
      dropInvalidHeaderFields: true,
      desyncMitigationMode: elbv2.DesyncMitigationMode.STRICTEST,
    });
    this.loadBalancer.logAccessLogs(props.accessLogs, 'alb');
    const acl = webAcl(this, props.wafRateLimit);
    new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', { resourceArn: this.loadBalancer.loadBalancerArn, webAclArn: acl.attrArn });
    logBlocked(this, acl, props.logRetention);

    // HTTPS to the target: with Service Connect TLS on, what answers on the orchestrator's port is
    // its Service Connect proxy, which speaks TLS 1.3 only (it decrypts and hands the request to the
    // sidecar in the task). Plain HTTP there, requests and health checks alike, would fail the
    // handshake and leave every target unhealthy. The ALB does not verify a target's certificate;
    // its TLS 1.3 listener policy (below) lets it speak TLS 1.3 to targets.
    const targets = new elbv2.ApplicationTargetGroup(this, 'Orchestrator', {
      vpc: props.vpc,
      targetType: elbv2.TargetType.IP,
      protocol: elbv2.ApplicationProtocol.HTTPS,
      port: SERVICE_PORTS.orchestrator,
      deregistrationDelay: Duration.seconds(30),
      // The health check's protocol is its own setting, HTTP unless said, whatever the group's.
      healthCheck: { protocol: elbv2.Protocol.HTTPS, path: '/health', healthyHttpCodes: '200', interval: Duration.seconds(15) },
      targets: [props.orchestrator.loadBalancerTarget({ containerName: 'sidecar', containerPort: SERVICE_PORTS.orchestrator })],
    });

    this.loadBalancer.addListener('Https', {
      protocol: elbv2.ApplicationProtocol.HTTPS,
      port: 443,
      // SecurityGroups owns the ingress rule (and its CIDR); `open` would add 0.0.0.0/0 itself.
      open: false,
      certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn)],
      // ELBSecurityPolicy-TLS13-1-2-2021-06: clients get TLS 1.2 or 1.3, the targets' TLS 1.3-only
      // Service Connect proxies the TLS 1.3 they need.
      sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
      defaultTargetGroups: [targets],
    });
  }
}

/**
 * AWS's IP reputation and known-bad-inputs rule groups, then a per-address rate rule. Rule groups
 * that inspect bodies by size or shape (the common rule set's 8 KB body limit, SQL injection
 * patterns) are left out: JSON-RPC bodies up to the sidecar's 1 MiB limit are legitimate, and the
 * sidecar validates every params object against its schema.
 */
function webAcl(scope: Construct, rateLimit: number): wafv2.CfnWebACL {
  const visibility = (metricName: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({ metricName, cloudWatchMetricsEnabled: true, sampledRequestsEnabled: true });
  const managed = (name: string, priority: number): wafv2.CfnWebACL.RuleProperty => ({
    name,
    priority,
    statement: { managedRuleGroupStatement: { vendorName: 'AWS', name } },
    overrideAction: { none: {} },
    visibilityConfig: visibility(name),
  });
  return new wafv2.CfnWebACL(scope, 'WebAcl', {
    name: 'ca-a2a-ingress',
    scope: 'REGIONAL',
    defaultAction: { allow: {} },
    visibilityConfig: visibility('ca-a2a-ingress'),
    rules: [
      managed('AWSManagedRulesAmazonIpReputationList', 0),
      managed('AWSManagedRulesKnownBadInputsRuleSet', 1),
      {
        name: 'PerAddressRate',
        priority: 2,
        statement: { rateBasedStatement: { limit: rateLimit, evaluationWindowSec: 300, aggregateKeyType: 'IP' } },
        action: { block: {} },
        visibilityConfig: visibility('PerAddressRate'),
      },
    ],
  });
}

/**
 * Logs what the web ACL blocked (or counted) to CloudWatch Logs, with the headers that carry
 * credentials redacted: the ALB's access logs already have every request, but not which rule
 * matched nor the headers. Allowed requests are dropped from this log to keep it small.
 */
function logBlocked(scope: Construct, acl: wafv2.CfnWebACL, retention: logs.RetentionDays): void {
  const group = new logs.LogGroup(scope, 'WafLogs', { logGroupName: WAF_LOG_GROUP, retention, removalPolicy: RemovalPolicy.RETAIN });
  // WAF wants the group's ARN without the `:*` suffix that LogGroup.logGroupArn carries.
  const destination = Stack.of(scope).formatArn({ service: 'logs', resource: 'log-group', resourceName: WAF_LOG_GROUP, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
  const config = new wafv2.CfnLoggingConfiguration(scope, 'WafLogging', {
    resourceArn: acl.attrArn,
    logDestinationConfigs: [destination],
    // A bearer token or a DPoP proof in a log would be a credential anyone with log access could replay.
    redactedFields: ['authorization', 'dpop', 'cookie'].map((name) => ({ singleHeader: { Name: name } })),
    // CloudFormation's own shape: the L1 type of this property is untyped.
    loggingFilter: {
      DefaultBehavior: 'DROP',
      Filters: [{ Behavior: 'KEEP', Requirement: 'MEETS_ANY', Conditions: [{ ActionCondition: { Action: 'BLOCK' } }, { ActionCondition: { Action: 'COUNT' } }] }],
    },
  });
  config.node.addDependency(group);
}
