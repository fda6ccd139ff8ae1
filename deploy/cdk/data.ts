import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { AuroraPostgres, databaseUrlSecret, roleUrlSecret } from './aurora.js';
import { Redis } from './redis.js';

/**
 * The realm's confidential clients (deploy/keycloak/realm-ca-a2a.json): the sidecars that obtain
 * tokens by client_credentials, then the callers outside the mesh (lambda, viewer, processor).
 */
export const CLIENTS = ['orchestrator', 'extractor', 'validator', 'archivist', 'admin', 'lambda', 'viewer', 'document-processor'] as const;
export type ClientName = (typeof CLIENTS)[number];

/** The sidecars' role on the revocations database: SELECT on its tables (ca-a2a revoke migrate creates it). */
export const REVOCATIONS_READER = 'revocations_reader';

export interface DataProps {
  readonly vpc: ec2.IVpc;
  readonly documentsDbSecurityGroup: ec2.ISecurityGroup;
  readonly keycloakDbSecurityGroup: ec2.ISecurityGroup;
  readonly revocationsDbSecurityGroup: ec2.ISecurityGroup;
  readonly redisSecurityGroup: ec2.ISecurityGroup;
  readonly redisNodeType: string;
}

/**
 * Every stateful resource and every secret. Three Aurora clusters rather than three databases in
 * one: Keycloak, the MCP gateway and the sidecars' revocations share neither a network path nor a
 * credential.
 */
export class Data extends Construct {
  readonly documentsBucket: s3.Bucket;
  /** SSE-S3 bucket of the documents bucket's server access logs and the ALB's access logs. */
  readonly accessLogsBucket: s3.Bucket;
  /** The documents bucket's KMS key (SSE-KMS with a bucket key). */
  readonly documentsKey: kms.Key;
  readonly documentsDb: AuroraPostgres;
  /** DATABASE_URL of the MCP gateway. */
  readonly documentsDbUrl: secretsmanager.Secret;
  readonly keycloakDb: AuroraPostgres;
  /** Durable token revocations: read by every sidecar, written by the admin API; holds no documents. */
  readonly revocationsDb: AuroraPostgres;
  /** DATABASE_URL of the admin API and its migrate step: the master user, who owns the tables. */
  readonly revocationsDbUrl: secretsmanager.Secret;
  /** DATABASE_URL of every sidecar: {@link REVOCATIONS_READER}, which may only SELECT. */
  readonly revocationsReaderUrl: secretsmanager.Secret;
  readonly redis: Redis;
  readonly clientSecrets: Readonly<Record<ClientName, secretsmanager.Secret>>;

  constructor(scope: Construct, id: string, props: DataProps) {
    super(scope, id);

    // Neither S3 server access logs nor ALB access logs can be written to an SSE-KMS bucket,
    // hence SSE-S3 here.
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.accessLogsBucket = accessLogs;

    this.documentsKey = new kms.Key(this, 'DocumentsKey', {
      description: 'ca-a2a documents bucket',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.documentsBucket = new s3.Bucket(this, 'Documents', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.documentsKey,
      bucketKeyEnabled: true,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'documents/',
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.documentsDb = new AuroraPostgres(this, 'DocumentsDb', {
      vpc: props.vpc,
      securityGroup: props.documentsDbSecurityGroup,
      databaseName: 'ca_a2a',
      username: 'ca_a2a',
    });
    this.documentsDbUrl = databaseUrlSecret(this, 'DocumentsDbUrl', this.documentsDb);
    this.keycloakDb = new AuroraPostgres(this, 'KeycloakDb', {
      vpc: props.vpc,
      securityGroup: props.keycloakDbSecurityGroup,
      databaseName: 'keycloak',
      username: 'keycloak',
    });
    // A cluster of its own: sidecars need the revocation list, and must never reach documents.
    this.revocationsDb = new AuroraPostgres(this, 'RevocationsDb', {
      vpc: props.vpc,
      securityGroup: props.revocationsDbSecurityGroup,
      databaseName: 'revocations',
      username: 'revocations',
    });
    this.revocationsDbUrl = databaseUrlSecret(this, 'RevocationsDbUrl', this.revocationsDb);
    this.revocationsReaderUrl = roleUrlSecret(this, 'RevocationsDbReaderUrl', this.revocationsDb, REVOCATIONS_READER, 'revocations, read-only (the sidecars)');
    this.redis = new Redis(this, 'Redis', {
      vpc: props.vpc,
      securityGroup: props.redisSecurityGroup,
      nodeType: props.redisNodeType,
    });

    // Keycloak reads the same secrets so the realm's confidential clients match the sidecars.
    this.clientSecrets = Object.fromEntries(
      CLIENTS.map((client) => [
        client,
        new secretsmanager.Secret(this, `ClientSecret-${client}`, {
          description: `ca-a2a OIDC client secret of ${client}`,
          generateSecretString: { passwordLength: 43, excludePunctuation: true },
        }),
      ]),
    ) as Record<ClientName, secretsmanager.Secret>;
  }
}
