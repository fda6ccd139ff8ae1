import { Duration, Fn, RemovalPolicy, SecretValue, Token } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { PRIVATE_SUBNET_SELECTION } from './network.js';

export interface AuroraPostgresProps {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly databaseName: string;
  readonly username: string;
}

/**
 * Characters left out of generated passwords so that the password can sit in a connection URL
 * unescaped (the URL secret below is assembled by CloudFormation, which cannot percent-encode).
 */
const URL_UNSAFE = ' %+~`#$&*()|[]{}:;<>?!\'/@"\\,=^';

/**
 * One encrypted Aurora PostgreSQL cluster (Serverless v2, writer + reader in the two zones),
 * 7-day backups, TLS forced server-side, reachable only through the given security group.
 */
export class AuroraPostgres extends Construct {
  readonly cluster: rds.DatabaseCluster;
  /** The generated master credentials (JSON: username, password, host, port, dbname). */
  readonly credentials: secretsmanager.ISecret;
  readonly databaseName: string;
  readonly username: string;

  constructor(scope: Construct, id: string, props: AuroraPostgresProps) {
    super(scope, id);
    this.databaseName = props.databaseName;
    this.username = props.username;
    const engine = rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_6 });
    const parameterGroup = new rds.ParameterGroup(this, 'Parameters', {
      engine,
      parameters: { 'rds.force_ssl': '1' },
    });

    this.cluster = new rds.DatabaseCluster(this, 'Cluster', {
      engine,
      parameterGroup,
      credentials: rds.Credentials.fromGeneratedSecret(props.username, { excludeCharacters: URL_UNSAFE }),
      defaultDatabaseName: props.databaseName,
      writer: rds.ClusterInstance.serverlessV2('Writer'),
      readers: [rds.ClusterInstance.serverlessV2('Reader', { scaleWithWriter: true })],
      serverlessV2MinCapacity: 0.5,
      serverlessV2MaxCapacity: 8,
      vpc: props.vpc,
      vpcSubnets: PRIVATE_SUBNET_SELECTION,
      securityGroups: [props.securityGroup],
      storageEncrypted: true,
      backup: { retention: Duration.days(7) },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.SNAPSHOT,
    });
    const secret = this.cluster.secret;
    if (secret === undefined) throw new Error('Aurora cluster without generated credentials');
    this.credentials = secret;
  }
}

/**
 * A login role of `db` that is not its master user, with a generated password: the secret holds
 * `postgres://role:password@host:port/db?sslmode=verify-full`. CloudFormation creates neither the
 * role nor its grants; whoever owns the schema does, from this very URL (for the revocations
 * database, `ca-a2a revoke migrate` in the admin task).
 */
export function roleUrlSecret(scope: Construct, id: string, db: AuroraPostgres, role: string, purpose: string): secretsmanager.Secret {
  const password = new secretsmanager.Secret(scope, `${id}Password`, {
    description: `password of ${role} on ${db.databaseName}`,
    generateSecretString: { passwordLength: 40, excludeCharacters: URL_UNSAFE },
  });
  return urlSecret(scope, id, db, role, password.secretValue.unsafeUnwrap(), purpose);
}

/**
 * A secret holding `postgres://user:password@host:port/db?sslmode=verify-full` for DATABASE_URL.
 * CloudFormation resolves the dynamic reference when it writes the secret; the template only
 * ever holds the reference, never the password.
 */
export function databaseUrlSecret(scope: Construct, id: string, db: AuroraPostgres): secretsmanager.Secret {
  return urlSecret(scope, id, db, db.username, db.credentials.secretValueFromJson('password').unsafeUnwrap(), db.databaseName);
}

function urlSecret(scope: Construct, id: string, db: AuroraPostgres, user: string, password: string, purpose: string): secretsmanager.Secret {
  // The cluster (writer) endpoint, also for a role that only reads: a sidecar loading from a
  // lagging replica could miss a revocation acknowledged just before, whose push it also missed.
  const endpoint = db.cluster.clusterEndpoint;
  return new secretsmanager.Secret(scope, id, {
    description: `DATABASE_URL for ${purpose}`,
    secretStringValue: SecretValue.unsafePlainText(
      Fn.join('', [
        `postgres://${user}:`, password,
        '@', endpoint.hostname, ':', Token.asString(endpoint.port), `/${db.databaseName}?sslmode=verify-full`,
      ]),
    ),
  });
}
