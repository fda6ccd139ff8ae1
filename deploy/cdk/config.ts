import type { App } from 'aws-cdk-lib';

/** The components that run as one Fargate service each behind the sidecar. */
export const SECURED_SERVICES = ['orchestrator', 'extractor', 'validator', 'archivist', 'mcp', 'admin'] as const;
export type SecuredServiceName = (typeof SECURED_SERVICES)[number];

/** Business agents: they call out through their sidecar's egress listener. */
export const AGENTS = ['orchestrator', 'extractor', 'validator', 'archivist'] as const;
export type AgentName = (typeof AGENTS)[number];

/**
 * Port conventions, identical in every task (each task has its own network namespace), in
 * compose and in docs/deploy.md. Only SERVICE_PORTS are ever reachable from another task.
 */
export const SERVICE_PORTS = {
  mcp: 8000,
  orchestrator: 8001,
  extractor: 8002,
  validator: 8003,
  archivist: 8004,
  admin: 8005,
} as const satisfies Record<SecuredServiceName, number>;
/** Where the agent / MCP gateway / admin API listens, on 127.0.0.1 only. */
export const UPSTREAM_PORT = 9000;
/** The sidecar's admin listener (/ready, /healthz, /metrics): the metrics scraper only. */
export const ADMIN_PORT = 9090;
/** The sidecar's egress listener, bound to 127.0.0.1: only containers of the same task reach it. */
export const EGRESS_PORT = 15001;
export const KEYCLOAK_PORT = 8080;
/** Keycloak's management interface (health), used by its container health check only. */
export const KEYCLOAK_MANAGEMENT_PORT = 9000;
/**
 * Keycloak replicas talk to each other on these (the jdbc-ping JGroups stack, Keycloak ≥ 26.1):
 * 7800 for cluster traffic, 57800 (7800 + 50000) for failure detection (FD_SOCK2).
 */
export const KEYCLOAK_CLUSTER_PORTS = [7800, 57800] as const;
/** The realm's path under Keycloak's frontend URL: issuer = KC_HOSTNAME + REALM_PATH. */
export const REALM_PATH = '/realms/ca-a2a';
/**
 * The folders of the documents bucket the MCP gateway's S3 tools may touch (its
 * CA_A2A_S3_PREFIXES): the stack passes them to the gateway and scopes its task role to them.
 */
export const DOCUMENT_PREFIXES = ['uploads/', 'archive/'] as const;
export const NAMESPACE = 'ca-a2a.local';

/** Which Cloud Map / Service Connect name each sidecar is reached by. */
export function serviceDnsName(name: SecuredServiceName | 'keycloak'): string {
  return `${name}.${NAMESPACE}`;
}

/** Every value an operator chooses, each with a default that synthesises offline. */
export interface DeployConfig {
  readonly account: string | undefined;
  readonly region: string;
  readonly availabilityZones: readonly [string, string];
  readonly imageRepository: string;
  readonly keycloakRepository: string;
  readonly keycloakTag: string;
  readonly desiredCounts: Readonly<Record<SecuredServiceName | 'keycloak', number>>;
  readonly logRetentionDays: number;
  readonly albIngressCidr: string;
  /** Requests one client address may send to the ALB in 5 minutes before WAF blocks it. */
  readonly wafRateLimit: number;
  /** The default of the stack's PublicUrl parameter; unset, the parameter has none and a deploy must give it. */
  readonly publicUrl: string | undefined;
  /** The sidecars' --issuer; Keycloak's KC_HOSTNAME is derived from it (see keycloakHostname). */
  readonly issuerUrl: string;
  /** An existing AWS Private CA in short-lived mode; unset → the stack creates one. */
  readonly serviceConnectCaArn: string | undefined;
  readonly redisNodeType: string;
  /** The ADOT collector image that scrapes sidecar metrics. */
  readonly collectorImage: string;
}

const DEFAULT_REGION = 'eu-west-3';

/** Reads `cdk.json` / `-c key=value` context; values given on the command line arrive as strings. */
export function readConfig(app: App): DeployConfig {
  const ctx = (key: string): unknown => app.node.tryGetContext(key);
  const str = (key: string, fallback: string): string => {
    const value = ctx(key);
    return typeof value === 'string' && value !== '' ? value : fallback;
  };
  const int = (key: string, fallback: number, min: number): number => {
    const raw = ctx(key);
    if (raw === undefined) return fallback;
    const value = typeof raw === 'number' ? raw : Number(raw);
    if (!Number.isInteger(value) || value < min) throw new Error(`context ${key} must be an integer >= ${min}, got ${String(raw)}`);
    return value;
  };

  // Said rather than ignored: an operator who sets it expects NAT gateways, which this stack no longer builds.
  if (ctx('natGateways') !== undefined) {
    throw new Error('context natGateways is gone: the stack builds no NAT gateway, since no task has a way to the internet (docs/deploy.md, "Network and its cost")');
  }
  const region = str('region', DEFAULT_REGION);
  const azs = str('availabilityZones', `${region}a,${region}b`).split(',').map((az) => az.trim());
  if (azs.length !== 2 || azs.some((az) => az === '')) throw new Error('context availabilityZones must name exactly two zones');
  const account = ctx('account');

  const defaultCount = int('desiredCount', 2, 0);
  const desiredCounts = Object.fromEntries(
    [...SECURED_SERVICES, 'keycloak' as const].map((name) => [name, int(`desiredCount.${name}`, defaultCount, 0)]),
  ) as Record<SecuredServiceName | 'keycloak', number>;

  return {
    account: typeof account === 'string' && account !== '' ? account : undefined,
    region,
    availabilityZones: [azs[0] ?? '', azs[1] ?? ''],
    imageRepository: str('imageRepository', 'ca-a2a'),
    keycloakRepository: str('keycloakRepository', 'ca-a2a-keycloak'),
    // ≥ 26.4: the jdbc-ping cache stack (26.1) and DPoP as a supported, default-on feature (26.4).
    // The exact release deploy/keycloak/Dockerfile builds from, which its image is tagged with.
    keycloakTag: str('keycloakTag', '26.4.7'),
    desiredCounts,
    logRetentionDays: int('logRetentionDays', 30, 1),
    albIngressCidr: str('albIngressCidr', '0.0.0.0/0'),
    // 20 a second from one address, averaged over 5 minutes: 4 times the default per-caller
    // budget of one sidecar (300 a minute), so a NAT shared by a few callers is not blocked.
    wafRateLimit: int('wafRateLimit', 6000, 100),
    publicUrl: typeof ctx('publicUrl') === 'string' ? publicUrl(ctx('publicUrl') as string) : undefined,
    // Plain http at the application layer: Service Connect TLS encrypts the hop between tasks.
    issuerUrl: issuerUrl(str('issuerUrl', `http://${serviceDnsName('keycloak')}:${KEYCLOAK_PORT}${REALM_PATH}`)),
    serviceConnectCaArn: typeof ctx('serviceConnectCaArn') === 'string' ? (ctx('serviceConnectCaArn') as string) : undefined,
    redisNodeType: str('redisNodeType', 'cache.t4g.small'),
    collectorImage: collectorImage(str('collectorImage', 'public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3')),
  };
}

/** Where the stack's ECR pull-through cache rule keeps images of Amazon ECR Public. */
export const ECR_PUBLIC_CACHE_PREFIX = 'ca-a2a-ecr-public';

/**
 * The collector image on Amazon ECR Public, `public.ecr.aws/REPOSITORY:TAG`: the scraper has no
 * way to the internet and pulls it through the account's ECR (pull-through cache, VPC endpoints).
 */
function collectorImage(value: string): string {
  if (!/^public\.ecr\.aws\/[a-z0-9._/-]+:[A-Za-z0-9._-]+$/.test(value)) {
    throw new Error(`context collectorImage must be public.ecr.aws/REPOSITORY:TAG (pulled through this account's ECR: the scraper has no internet egress), got ${value}`);
  }
  return value;
}

/**
 * An https base URL (no query, fragment, credentials or trailing slash): what PUBLIC_URL_PATTERN
 * accepts at deploy time. The orchestrator's card says it + `/message`, which a trailing slash
 * would turn into `//message`, a URL its sidecar's DPoP htu check does not expect.
 */
export const PUBLIC_URL_PATTERN = '^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-])?$';

/** Refuses at synth a publicUrl the PublicUrl parameter would refuse at deploy time. */
function publicUrl(value: string): string {
  if (!new RegExp(PUBLIC_URL_PATTERN).test(value)) throw new Error(`context publicUrl must be https://HOST[:PORT][/PATH] without a trailing slash, got ${value}`);
  return value;
}

/** Refuses at synth an issuer Keycloak could not put in `iss`: it must be a frontend URL + REALM_PATH. */
function issuerUrl(value: string): string {
  const url = URL.canParse(value) ? new URL(value) : undefined;
  const ok = url !== undefined && (url.protocol === 'https:' || url.protocol === 'http:') && url.search === '' && url.hash === ''
    && url.username === '' && url.password === '' && value.endsWith(REALM_PATH);
  if (!ok) throw new Error(`context issuerUrl must be http(s)://HOST[:PORT][/PATH]${REALM_PATH} (Keycloak's KC_HOSTNAME + the realm path), got ${value}`);
  return value;
}

/**
 * Keycloak's KC_HOSTNAME (its frontend URL) for an issuer: tokens carry KC_HOSTNAME + REALM_PATH as
 * `iss`, so deriving it from the sidecars' --issuer keeps the two equal whatever the operator sets.
 */
export function keycloakHostname(issuer: string): string {
  return issuer.slice(0, -REALM_PATH.length);
}
