import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { Construct } from 'constructs';
import { SERVICE_PORTS } from './config.js';

export interface IngressProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly certificateArn: string;
  readonly orchestrator: ecs.FargateService;
}

/**
 * The internet-facing ALB: HTTPS only, forwarding to the orchestrator sidecar and nothing else.
 * Its health check uses the public `GET /health` route on the traffic port, because the sidecar's
 * admin listener (/ready) is closed to the ALB by design.
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

    const targets = new elbv2.ApplicationTargetGroup(this, 'Orchestrator', {
      vpc: props.vpc,
      targetType: elbv2.TargetType.IP,
      protocol: elbv2.ApplicationProtocol.HTTP,
      port: SERVICE_PORTS.orchestrator,
      deregistrationDelay: Duration.seconds(30),
      healthCheck: { path: '/health', healthyHttpCodes: '200', interval: Duration.seconds(15) },
      targets: [props.orchestrator.loadBalancerTarget({ containerName: 'sidecar', containerPort: SERVICE_PORTS.orchestrator })],
    });

    this.loadBalancer.addListener('Https', {
      protocol: elbv2.ApplicationProtocol.HTTPS,
      port: 443,
      // SecurityGroups owns the ingress rule (and its CIDR); `open` would add 0.0.0.0/0 itself.
      open: false,
      certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn)],
      sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
      defaultTargetGroups: [targets],
    });
  }
}
