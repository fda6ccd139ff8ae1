import type { CfnTag } from 'aws-cdk-lib';
import * as acmpca from 'aws-cdk-lib/aws-acmpca';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct, type IDependable } from 'constructs';
import { NAMESPACE } from './config.js';

export interface MeshClusterProps {
  readonly vpc: ec2.IVpc;
  /** An existing Private CA in short-lived-certificate mode, tagged AmazonECSManaged=true. */
  readonly serviceConnectCaArn: string | undefined;
}

/**
 * The ECS cluster, the `ca-a2a.local` Cloud Map namespace and what Service Connect TLS needs:
 * a Private CA and the infrastructure role ECS uses to issue the proxies' certificates. This
 * encrypts every sidecar-to-sidecar hop, the first step towards mutual TLS between sidecars.
 */
export class MeshCluster extends Construct {
  readonly cluster: ecs.Cluster;
  readonly namespace: servicediscovery.PrivateDnsNamespace;
  readonly tls: ecs.ServiceConnectTlsConfiguration;
  /** Services must wait for this before Service Connect can issue certificates. */
  readonly tlsReady: IDependable;

  constructor(scope: Construct, id: string, props: MeshClusterProps) {
    super(scope, id);
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.namespace = new servicediscovery.PrivateDnsNamespace(this, 'Namespace', {
      name: NAMESPACE,
      vpc: props.vpc,
      description: 'ca-a2a service names (Service Connect)',
    });

    const role = new iam.Role(this, 'ServiceConnectTlsRole', {
      assumedBy: new iam.ServicePrincipal('ecs.amazonaws.com'),
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonECSInfrastructureRolePolicyForServiceConnectTransportLayerSecurity'),
      ],
    });

    if (props.serviceConnectCaArn !== undefined) {
      this.tls = { awsPcaAuthorityArn: props.serviceConnectCaArn, role };
      this.tlsReady = role;
      return;
    }
    const ca = new acmpca.CfnCertificateAuthority(this, 'ServiceConnectCa', {
      type: 'ROOT',
      keyAlgorithm: 'EC_prime256v1',
      signingAlgorithm: 'SHA256WITHECDSA',
      subject: { commonName: 'ca-a2a service connect', organization: 'ca-a2a' },
      // Short-lived mode: certificates live days, so there is no revocation list to run.
      usageMode: 'SHORT_LIVED_CERTIFICATE',
      // The managed infrastructure policy only lets ECS use CAs carrying this tag.
      tags: [{ key: 'AmazonECSManaged', value: 'true' } satisfies CfnTag],
    });
    const certificate = new acmpca.CfnCertificate(this, 'ServiceConnectCaCertificate', {
      certificateAuthorityArn: ca.attrArn,
      certificateSigningRequest: ca.attrCertificateSigningRequest,
      signingAlgorithm: 'SHA256WITHECDSA',
      templateArn: 'arn:aws:acm-pca:::template/RootCACertificate/V1',
      validity: { type: 'YEARS', value: 10 },
    });
    const activation = new acmpca.CfnCertificateAuthorityActivation(this, 'ServiceConnectCaActivation', {
      certificateAuthorityArn: ca.attrArn,
      certificate: certificate.attrCertificate,
      status: 'ACTIVE',
    });
    this.tls = { awsPcaAuthorityArn: ca.attrArn, role };
    this.tlsReady = activation;
  }
}
