import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { redisAclRules } from '../../deploy/cdk/redis-acl.js';
import { unknownToCommand } from './cli-help.js';

const COMPOSE = fileURLToPath(new URL('../../deploy/compose.yaml', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const repoFile = (relative: string): string => readFileSync(path.join(ROOT, relative), 'utf8');
const PORTS = { mcp: 8000, orchestrator: 8001, extractor: 8002, validator: 8003, archivist: 8004, admin: 8005 } as const;
type Secured = keyof typeof PORTS;
/** Upstream container of each sidecar. */
const UPSTREAMS: Record<Secured, string> = {
  orchestrator: 'orchestrator', extractor: 'extractor', validator: 'validator', archivist: 'archivist', mcp: 'mcp-gateway', admin: 'admin-api',
};
const ISSUER = 'http://keycloak:8080/realms/ca-a2a';

interface Service {
  image?: string;
  build?: unknown;
  pull_policy?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  network_mode?: string;
  volumes?: string[];
  read_only?: boolean;
  user?: string;
  cap_drop?: string[];
  networks?: string[] | Record<string, unknown>;
  stop_grace_period?: string;
  restart?: string;
  depends_on?: Record<string, unknown>;
}

const flag = (args: readonly string[] | undefined, name: string): string | undefined => {
  const i = args?.indexOf(name) ?? -1;
  return i < 0 ? undefined : args?.[i + 1];
};

describe('deploy/compose.yaml', () => {
  let services: Record<string, Service>;

  before(() => {
    // Compose resolves `<<:` merge keys, so the test must too.
    const doc = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as { services: Record<string, Service> };
    services = doc.services;
  });

  it('runs every service behind its own sidecar, sharing the sidecar\'s network namespace', () => {
    for (const [service, upstreamName] of Object.entries(UPSTREAMS) as Array<[Secured, string]>) {
      const sidecar = services[`${service}-sidecar`];
      const upstream = services[upstreamName];
      assert.ok(sidecar && upstream, service);
      assert.equal(sidecar.command?.[0], 'sidecar');
      assert.equal(flag(sidecar.command, '--service'), service);
      assert.equal(flag(sidecar.command, '--listen'), `0.0.0.0:${PORTS[service]}`);
      assert.equal(upstream.network_mode, `service:${service}-sidecar`);
      assert.equal(flag(upstream.command, '--listen'), '127.0.0.1:9000', `${upstreamName} binds loopback only`);
      assert.equal(sidecar.environment?.['CA_A2A_UPSTREAM'], 'http://127.0.0.1:9000');
    }
  });

  it('advertises in every agent\'s card the issuer its sidecar trusts, and in the orchestrator\'s its published URL', () => {
    for (const agent of ['orchestrator', 'extractor', 'validator', 'archivist']) {
      assert.equal(services[agent]?.environment?.['CA_A2A_ISSUER'], ISSUER, agent);
    }
    const published = services['orchestrator-sidecar']?.environment?.['CA_A2A_PUBLIC_URL'];
    assert.equal(published, 'http://localhost:8001');
    assert.equal(services['orchestrator']?.environment?.['CA_A2A_PUBLIC_URL'], `${published}/message`);
  });

  it('gives our containers only flags and variables their command names in its --help', () => {
    const ours = Object.entries(services).filter(([, service]) => service.image === 'ca-a2a:local');
    assert.equal(ours.length, 13);
    for (const [name, service] of ours) {
      const [command = '', ...args] = service.command ?? [];
      assert.deepEqual(unknownToCommand(command, args, Object.keys(service.environment ?? {})), [], name);
    }
  });

  it('gives every sidecar longer to stop than its 25 s drain, not compose\'s default 10 s', () => {
    for (const service of Object.keys(PORTS)) assert.equal(services[`${service}-sidecar`]?.stop_grace_period, '30s', service);
  });

  it('publishes no port of an upstream, and no sidecar admin or egress port', () => {
    for (const name of Object.values(UPSTREAMS)) assert.equal(services[name]?.ports, undefined, name);
    for (const service of Object.keys(PORTS)) {
      const sidecar = services[`${service}-sidecar`];
      for (const port of sidecar?.ports ?? []) assert.doesNotMatch(port, /:(9090|15001)$/, `${service}-sidecar publishes ${port}`);
      // Compose runs no metrics scraper: nothing on `mesh` (another sidecar, an agent) reaches /metrics.
      assert.match(sidecar?.environment?.['CA_A2A_ADMIN_LISTEN'] ?? '', /^127\.0\.0\.1:9090$/, `${service}-sidecar admin listener`);
      const egress = flag(sidecar?.command, '--egress-listen');
      assert.ok(egress === undefined || egress.startsWith('127.0.0.1:'));
    }
  });

  it('points every sidecar at the Keycloak realm and the shared Redis, and Keycloak issues for that URL', () => {
    for (const service of Object.keys(PORTS)) {
      const env = services[`${service}-sidecar`]?.environment ?? {};
      assert.equal(env['CA_A2A_ISSUER'], ISSUER, service);
      // The issuer is plain http on compose's network: egress would refuse it without this.
      assert.equal(env['CA_A2A_ALLOW_HTTP_ISSUER'], '1', service);
      assert.match(env['REDIS_URL'] ?? '', /^redis:\/\/ca-a2a-sidecar:[^@]+@redis:6379$/, service);
      // Only a sidecar that calls out (egress listener) asks for tokens, so only it holds a secret.
      if (flag(services[`${service}-sidecar`]?.command, '--egress-listen') !== undefined) {
        assert.match(env['CA_A2A_CLIENT_SECRET'] ?? '', /^\$\{CA_A2A_CLIENT_SECRET_[A-Z_]+:\?/, service);
      } else {
        assert.equal(env['CA_A2A_CLIENT_SECRET'], undefined, `${service} sidecar has no egress, so no client secret`);
      }
    }
    const keycloak = services['keycloak'];
    assert.match(keycloak?.image ?? '', /^quay\.io\/keycloak\/keycloak:/);
    assert.equal(`${keycloak?.environment?.['KC_HOSTNAME'] ?? ''}/realms/ca-a2a`, ISSUER);
  });

  it('imports the realm export and gives Keycloak every client secret it references', () => {
    const keycloak = services['keycloak'];
    assert.ok(keycloak !== undefined && keycloak.command?.includes('--import-realm'));
    const mount = keycloak.volumes?.find((v) => v.startsWith('./keycloak/realm-ca-a2a.json:/opt/keycloak/data/import/'));
    assert.ok(mount, 'realm export mounted into the import directory');
    const realmFile = path.join(path.dirname(COMPOSE), 'keycloak', 'realm-ca-a2a.json');
    if (existsSync(realmFile)) {
      const realm = readFileSync(realmFile, 'utf8');
      assert.equal((JSON.parse(realm) as { realm: string }).realm, 'ca-a2a');
      const placeholders = new Set([...realm.matchAll(/\$\{(CA_A2A_[A-Z_]+)\}/g)].map((m) => m[1] ?? ''));
      assert.deepEqual([...placeholders].filter((name) => keycloak.environment?.[name] === undefined), []);
    }
  });

  it('gives the MCP gateway, and only it, the documents database and the S3-compatible server', () => {
    const gateway = services['mcp-gateway']?.environment ?? {};
    assert.match(gateway['DATABASE_URL'] ?? '', /@postgres:5432\/ca_a2a$/);
    assert.equal(gateway['CA_A2A_S3_ENDPOINT'], 'http://minio:9000');
    assert.ok(services['minio'] && services['postgres'] && services['redis']);
    for (const [name, service] of Object.entries(services)) {
      if (name === 'mcp-gateway') continue;
      const url = service.environment?.['DATABASE_URL'];
      assert.ok(url === undefined || /@revocations-db:5432\/revocations$/.test(url), `${name} reaches no database but the revocations one`);
      assert.equal(service.environment?.['AWS_SECRET_ACCESS_KEY'], undefined, `${name} has no S3 key`);
    }
  });

  it('gives every sidecar and the admin API the revocations database and Redis, and every sidecar the egress service map', () => {
    for (const name of [...Object.keys(PORTS).map((s) => `${s}-sidecar`), 'admin-api']) {
      const env = services[name]?.environment ?? {};
      assert.match(env['DATABASE_URL'] ?? '', /@revocations-db:5432\/revocations$/, name);
      // Sidecars read revocations as the read-only role; the admin API writes them as the owner.
      assert.match(env['DATABASE_URL'] ?? '', name === 'admin-api' ? /^postgres:\/\/revocations:/ : /^postgres:\/\/revocations_reader:/, name);
      assert.match(env['REDIS_URL'] ?? '', /@redis:6379$/, name);
      if (name !== 'admin-api') assert.match(env['CA_A2A_SERVICE_URLS'] ?? '', /extractor=http:\/\/extractor-sidecar:8002/, name);
    }
  });

  it('runs Redis with the AWS stack\'s ACL users: default off, the sidecars on theirs, the admin API alone on its own', () => {
    const args = services['redis']?.command ?? [];
    const users = new Map<string, string[]>();
    args.forEach((arg, i) => {
      if (arg !== '--user') return;
      const end = args.findIndex((next, j) => j > i && next.startsWith('--'));
      const [name = '', ...rules] = args.slice(i + 1, end < 0 ? undefined : end);
      users.set(name, rules);
    });
    assert.deepEqual([...users.keys()].sort(), ['ca-a2a-admin', 'ca-a2a-sidecar', 'default']);
    assert.deepEqual(users.get('default'), ['off']);
    assert.ok(!args.includes('--requirepass'), 'no password that opens everything');
    for (const user of ['sidecar', 'admin'] as const) {
      const [password = '', ...rules] = users.get(`ca-a2a-${user}`) ?? [];
      assert.match(password, /^>\$\{REDIS_[A-Z]+_PASSWORD:\?/, user);
      assert.deepEqual(rules, redisAclRules(user), user);
    }
    assert.match(services['admin-api']?.environment?.['REDIS_URL'] ?? '', /^redis:\/\/ca-a2a-admin:\$\{REDIS_ADMIN_PASSWORD:\?[^}]+\}@redis:6379$/);
    const holders = Object.entries(services).filter(([, service]) => (service.environment?.['REDIS_URL'] ?? '').includes('ca-a2a-admin')).map(([name]) => name);
    assert.deepEqual(holders, ['admin-api']);
  });

  it('creates the sidecars\' read-only role, as the owner, before any sidecar starts', () => {
    const migrate = services['revocations-migrate'];
    assert.deepEqual(migrate?.command, ['revoke', 'migrate']);
    assert.equal(migrate.restart, 'no');
    assert.match(migrate.environment?.['DATABASE_URL'] ?? '', /^postgres:\/\/revocations:/);
    assert.equal(migrate.environment?.['CA_A2A_REVOCATIONS_READER_URL'], services['admin-sidecar']?.environment?.['DATABASE_URL']);
    for (const name of Object.keys(PORTS).map((s) => `${s}-sidecar`)) {
      assert.deepEqual(services[name]?.depends_on?.['revocations-migrate'], { condition: 'service_completed_successfully' }, name);
    }
  });

  it('runs our containers read-only, non-root and without capabilities', () => {
    for (const name of [...Object.keys(PORTS).map((s) => `${s}-sidecar`), ...Object.values(UPSTREAMS)]) {
      const service = services[name];
      assert.equal(service?.read_only, true, name);
      assert.equal(service.user, '10001:10001', name);
      assert.deepEqual(service.cap_drop, ['ALL'], name);
    }
  });

  it('pulls every image at an exact release: no latest, no major-only or minor-only line that moves under it', () => {
    const pulled = Object.entries(services).filter(([, service]) => service.build === undefined && service.pull_policy !== 'never');
    assert.ok(pulled.length > 0);
    for (const [name, service] of pulled) {
      const image = service.image ?? '';
      const tag = /^[^@]+:([^:@/]+)(@sha256:[0-9a-f]{64})?$/.exec(image)?.[1] ?? '';
      // PostgreSQL releases are MAJOR.MINOR; MinIO's are RELEASE.<UTC time>; everything else here is MAJOR.MINOR.PATCH.
      const exact = image.startsWith('postgres:') ? /^\d+\.\d+(-[a-z0-9.]+)?$/ : /^(\d+\.\d+\.\d+(-[a-z0-9.]+)?|RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)$/;
      assert.match(tag, exact, `${name}: ${image}`);
    }
    // The databases are the PostgreSQL release the Aurora clusters run (deploy/cdk/aurora.ts).
    const aurora = /AuroraPostgresEngineVersion\.VER_(\d+)_(\d+)\b/.exec(repoFile('deploy/cdk/aurora.ts'));
    assert.ok(aurora, 'deploy/cdk/aurora.ts names its engine version');
    for (const name of ['postgres', 'revocations-db', 'keycloak-db']) {
      assert.match(services[name]?.image ?? '', new RegExp(`^postgres:${aurora[1] ?? ''}\\.${aurora[2] ?? ''}-`), name);
    }
  });

  it('names every variable it requires in docs/deploy.md, and keeps deploy/.env out of git and of the image context', () => {
    const uncommented = repoFile('deploy/compose.yaml').split('\n').filter((line) => !line.trimStart().startsWith('#')).join('\n');
    const required = [...new Set([...uncommented.matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1] ?? ''))].sort();
    assert.ok(required.length > 0);
    // The paragraph that lists what goes into deploy/.env, with {A,B} written out.
    const docs = repoFile('docs/deploy.md');
    const paragraph = /Put these in `deploy\/\.env`[\s\S]*?\n\n/.exec(docs)?.[0] ?? '';
    const named = new Set([...paragraph.matchAll(/`([A-Z0-9_]*)(?:\{([A-Z0-9_,]+)\})?`/g)]
      .flatMap((m) => (m[2] === undefined ? [m[1] ?? ''] : m[2].split(',').map((part) => `${m[1] ?? ''}${part}`))));
    assert.deepEqual(required.filter((name) => !named.has(name)), [], 'required by compose.yaml, not listed in docs/deploy.md');
    // It holds every password of the stack: an `add -A` must not commit it.
    assert.equal(spawnSync('git', ['check-ignore', '-q', '--no-index', 'deploy/.env'], { cwd: ROOT }).status, 0, 'deploy/.env is not git-ignored');
    // .dockerignore patterns are anchored at the context root: `.env` alone does not match deploy/.env.
    const dockerignore = repoFile('.dockerignore').split('\n').map((line) => line.trim());
    assert.ok(dockerignore.includes('**/.env') && dockerignore.includes('**/.env.*'), '.dockerignore keeps every .env out of the build context');
  });

  it('puts the documents database and bucket on a network only the MCP sidecar joins, and Keycloak\'s database on Keycloak\'s', () => {
    /** The networks a container is on: an upstream is on its sidecar's (network_mode: service:). */
    const networksOf = (name: string): Set<string> => {
      const service = services[name];
      assert.ok(service, name);
      const shared = /^service:(.+)$/.exec(service.network_mode ?? '')?.[1];
      if (shared !== undefined) return networksOf(shared);
      const networks = service.networks ?? ['default'];
      return new Set(Array.isArray(networks) ? networks : Object.keys(networks));
    };
    const reaches = (from: string, to: string): boolean => [...networksOf(from)].some((network) => networksOf(to).has(network));
    for (const name of Object.keys(services)) {
      for (const data of ['postgres', 'minio']) {
        assert.equal(reaches(name, data), ['postgres', 'minio', 'minio-init', 'mcp-sidecar', 'mcp-gateway'].includes(name), `${name} → ${data}`);
      }
      assert.equal(reaches(name, 'keycloak-db'), ['keycloak', 'keycloak-db'].includes(name), `${name} → keycloak-db`);
    }
    // What every sidecar still needs: Keycloak, Redis, the revocations database, the other sidecars.
    for (const service of Object.keys(PORTS)) {
      for (const target of ['keycloak', 'redis', 'revocations-db', ...Object.keys(PORTS).map((s) => `${s}-sidecar`)]) {
        assert.ok(reaches(`${service}-sidecar`, target), `${service}-sidecar → ${target}`);
      }
    }
  });
});
