import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { createApp } from '../../deploy/cdk/app.js';
import { ofType, props, referencedId, securityGroupFlows, taskDefinitions, type Resources } from './cfn.js';
import { unknownToCommand } from './cli-help.js';
import { redisAclRules } from '../../deploy/cdk/redis-acl.js';

const SIDECAR_PORTS = { mcp: 8000, orchestrator: 8001, extractor: 8002, validator: 8003, archivist: 8004, admin: 8005 } as const;
type Secured = keyof typeof SIDECAR_PORTS;
const SECURED = Object.keys(SIDECAR_PORTS) as Secured[];
const AGENTS = ['orchestrator', 'extractor', 'validator', 'archivist'] as const;
/** The metrics scraper's one-shot container that makes its scratch volume writable. */
const SCRATCH_INIT = 'scratch-init';
const sg = (name: string): string => `ca-a2a ${name}`;
const repoFile = (relative: string): string => readFileSync(fileURLToPath(new URL(`../../${relative}`, import.meta.url)), 'utf8');
/** The paths the last stage of a Dockerfile declares with VOLUME (exec or shell form). */
const dockerVolumes = (relative: string): Set<string> => {
  const lines = repoFile(relative).replaceAll(/\\\n/g, ' ').split('\n').map((line) => line.trim());
  const last = lines.slice(lines.findLastIndex((line) => line.startsWith('FROM ')));
  return new Set(last.filter((line) => line.startsWith('VOLUME ')).flatMap((line) => {
    const args = line.slice('VOLUME '.length).trim();
    return args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  }));
};
/** The Keycloak version deploy/keycloak/Dockerfile builds from (its KEYCLOAK_VERSION default). */
const dockerfileKeycloakVersion = (): string | undefined => /^ARG KEYCLOAK_VERSION=(\S+)$/m.exec(repoFile('deploy/keycloak/Dockerfile'))?.[1];
const atLeast = (version: string, major: number, minor: number): boolean => {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
};

describe('deploy/cdk stack', () => {
  let outdir: string;
  let template: Template;
  let resources: Resources;
  let annotations: Annotations;
  let missingContext: unknown;

  before(() => {
    outdir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-'));
    const { app, stack } = createApp({ outdir });
    template = Template.fromStack(stack);
    annotations = Annotations.fromStack(stack);
    missingContext = app.synth().manifest.missing;
    resources = template.toJSON()['Resources'] as Resources;
  });
  after(() => rmSync(outdir, { recursive: true, force: true }));

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

  describe('security groups', () => {
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

  describe('tasks', () => {
    const families = [...SECURED.map((s) => `ca-a2a-${s}`), 'ca-a2a-keycloak', 'ca-a2a-metrics-scraper'];

    it('run one Fargate service per component', () => {
      const names = ofType(resources, 'AWS::ECS::Service').map(([, s]) => props(s)['ServiceName']);
      assert.deepEqual(names.sort(), [...SECURED.map((s) => `ca-a2a-${s}`), 'ca-a2a-keycloak', 'ca-a2a-metrics-scraper'].sort());
      for (const [, service] of ofType(resources, 'AWS::ECS::Service')) {
        assert.equal(props(service)['LaunchType'], 'FARGATE');
        const network = props(service)['NetworkConfiguration'] as { AwsvpcConfiguration: { AssignPublicIp: string } };
        assert.equal(network.AwsvpcConfiguration.AssignPublicIp, 'DISABLED');
      }
    });

    it('pair each upstream on 127.0.0.1 without a port mapping with a sidecar that is the only exposed port', () => {
      const tasks = taskDefinitions(resources);
      for (const service of SECURED) {
        const task = tasks.get(`ca-a2a-${service}`);
        assert.ok(task, service);
        // The admin task also runs its one-shot revocations-migrate before the API (its own test below).
        const running = task.containers.filter((c) => c.Essential !== false);
        assert.equal(running.length, 2, service);
        assert.equal(task.containers.length, service === 'admin' ? 3 : 2, service);
        const sidecar = running.find((c) => c.Name === 'sidecar');
        const upstream = running.find((c) => c.Name !== 'sidecar');
        assert.ok(sidecar && upstream, service);

        assert.equal(upstream.PortMappings, undefined, `${service} upstream publishes no port`);
        const listen = upstream.Command?.[upstream.Command.indexOf('--listen') + 1];
        assert.equal(listen, '127.0.0.1:9000', `${service} upstream binds loopback`);

        assert.deepEqual(sidecar.PortMappings?.map((p) => p.ContainerPort), [SIDECAR_PORTS[service]]);
        assert.equal(sidecar.Essential, true);
        assert.match(sidecar.HealthCheck?.Command.join(' ') ?? '', /http:\/\/127\.0\.0\.1:9090\/ready/);
        assert.deepEqual(sidecar.DependsOn, [{ ContainerName: upstream.Name, Condition: 'HEALTHY' }]);
        // Its 25 s drain ends before SIGKILL, whatever the launch type's default.
        assert.ok((sidecar.StopTimeout ?? 0) > 25, `${service} sidecar stop timeout ${String(sidecar.StopTimeout)}`);
        const args = sidecar.Command ?? [];
        const flag = (name: string): string | undefined => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1]; };
        assert.equal(flag('--service'), service);
        assert.equal(flag('--listen'), `0.0.0.0:${SIDECAR_PORTS[service]}`);
        assert.equal(flag('--upstream'), 'http://127.0.0.1:9000');
        assert.equal(flag('--admin-listen'), '0.0.0.0:9090');
        assert.equal(flag('--issuer'), 'http://keycloak.ca-a2a.local:8080/realms/ca-a2a');
        const egress = flag('--egress-listen');
        assert.ok(egress === undefined || egress.startsWith('127.0.0.1:'), `${service} egress listener stays inside the task`);
        assert.equal(egress !== undefined, (AGENTS as readonly string[]).includes(service));
        // The default issuer is http inside the VPC: without the flag, egress would refuse it and the sidecar exit.
        assert.equal(args.includes('--allow-http-issuer'), egress !== undefined, `${service}: --allow-http-issuer exactly where egress asks the http issuer for tokens`);
        // Only the orchestrator is behind the ALB: it believes the X-Forwarded-For of the public subnets' nodes, the others nobody's.
        const trusted = args.flatMap((arg, i) => (args[i - 1] === '--trusted-proxy' ? [arg] : []));
        assert.deepEqual(trusted, service === 'orchestrator' ? ['10.0.1.0/24', '10.0.2.0/24'] : [], `${service} --trusted-proxy`);
        const serviceUrls = sidecar.Environment?.find((entry) => entry.Name === 'CA_A2A_SERVICE_URLS')?.Value as string | undefined;
        if (egress !== undefined) assert.match(serviceUrls ?? '', /(^|,)mcp=http:\/\/mcp\.ca-a2a\.local:8000(,|$)/, `${service} egress finds targets by Service Connect name`);
        const secretNames = (sidecar.Secrets ?? []).map((secret) => secret.Name).sort();
        assert.deepEqual(secretNames.filter((name) => name !== 'CA_A2A_CLIENT_SECRET'), ['DATABASE_URL', 'REDIS_URL'], `${service} sidecar: revocations database and Redis`);
        assert.equal(secretNames.includes('CA_A2A_CLIENT_SECRET'), egress !== undefined, `${service} sidecar holds a client secret only to call out`);
      }
    });

    // The extractor's worst case (its PDF reader, 8 PDFs and 8 other documents held, the sidecar)
    // is about 1 GiB: in a 1 GiB task a burst of large files would end it out of memory.
    it('size each secured task for its upstream: 2 GiB for the extractor, 1 GiB for the others', () => {
      for (const [, task] of ofType(resources, 'AWS::ECS::TaskDefinition')) {
        const family = String(props(task)['Family']);
        const service = family.replace(/^ca-a2a-/, '');
        if (!(SECURED as readonly string[]).includes(service)) continue;
        assert.equal(props(task)['Memory'], service === 'extractor' ? '2048' : '1024', family);
        assert.equal(props(task)['Cpu'], '512', family);
      }
    });

    it('give our containers only flags and variables their command names in its --help', () => {
      const tasks = taskDefinitions(resources);
      let checked = 0;
      for (const service of SECURED) {
        for (const c of tasks.get(`ca-a2a-${service}`)?.containers ?? []) {
          const [command = '', ...args] = (c.Command ?? []).map(String);
          const variables = [...(c.Environment ?? []), ...(c.Secrets ?? [])].map((entry) => entry.Name);
          assert.deepEqual(unknownToCommand(command, args, variables), [], `ca-a2a-${service}/${c.Name}`);
          checked++;
        }
      }
      // The sidecar and its upstream in each secured task, and the admin task's revocations-migrate.
      assert.equal(checked, 2 * SECURED.length + 1);
    });

    it('harden every container: read-only root, non-root user, unprivileged, all capabilities dropped, CloudWatch logs', () => {
      const tasks = taskDefinitions(resources);
      for (const family of families) {
        const task = tasks.get(family);
        assert.ok(task, family);
        for (const c of task.containers) {
          const where = `${family}/${c.Name}`;
          assert.equal(c.ReadonlyRootFilesystem, true, where);
          // Root only for the scraper's one-shot scratch opener (its own test below), never a service.
          if (c.Name !== SCRATCH_INIT) assert.ok(c.User !== undefined && !/^(0|root)(:|$)/.test(c.User), `${where} user ${String(c.User)}`);
          assert.equal(c.Privileged, false, where);
          assert.deepEqual(c.LinuxParameters?.Capabilities?.Drop, ['ALL'], where);
          assert.equal(c.LinuxParameters?.Capabilities?.Add, undefined, where);
          assert.equal(c.LogConfiguration?.LogDriver, 'awslogs', where);
        }
      }
      for (const [id, group] of ofType(resources, 'AWS::Logs::LogGroup')) {
        assert.equal(typeof props(group)['RetentionInDays'], 'number', `${id} has a retention`);
      }
    });

    it('mount scratch only where the image declares a VOLUME, which Fargate mounts with that directory\'s owner and mode (else root 0755, which their non-root users cannot write)', () => {
      const tasks = taskDefinitions(resources);
      const images: Array<[string, string]> = [...SECURED.map((s): [string, string] => [`ca-a2a-${s}`, 'deploy/Dockerfile']), ['ca-a2a-keycloak', 'deploy/keycloak/Dockerfile']];
      let mounts = 0;
      for (const [family, dockerfile] of images) {
        const declared = dockerVolumes(dockerfile);
        for (const c of tasks.get(family)?.containers ?? []) {
          for (const mount of c.MountPoints ?? []) {
            mounts++;
            assert.ok(declared.has(mount.ContainerPath), `${family}/${c.Name} mounts ${mount.ContainerPath}, which ${dockerfile} does not declare a VOLUME`);
          }
        }
      }
      assert.equal(mounts, 2 * SECURED.length + 3);
      // The collector's image is not ours and declares none: a one-shot container of our image,
      // whose VOLUME /tmp the same volume is, opens it up before the collector starts.
      const scraper = tasks.get('ca-a2a-metrics-scraper')?.containers ?? [];
      const collector = scraper.find((c) => c.Name === 'collector');
      const init = scraper.find((c) => c.Name === SCRATCH_INIT);
      assert.ok(collector && init, 'collector and its scratch opener');
      assert.ok(dockerVolumes('deploy/Dockerfile').has('/tmp'));
      assert.match(JSON.stringify(init.Image), /\/ca-a2a:/, 'our image');
      assert.deepEqual(collector.MountPoints?.map((m) => [m.SourceVolume, m.ContainerPath]), [['tmp', '/tmp']]);
      assert.deepEqual(init.MountPoints?.map((m) => [m.SourceVolume, m.ContainerPath, m.ReadOnly]), [['tmp', '/tmp', false]]);
      assert.deepEqual(collector.DependsOn, [{ ContainerName: SCRATCH_INIT, Condition: 'SUCCESS' }]);
      // Root, because only the owner of the root-owned mount may change its mode; that needs no
      // capability, so it holds none, and it exits once done.
      assert.equal(init.Essential, false);
      assert.equal(init.User, '0:0');
      assert.deepEqual(init.LinuxParameters?.Capabilities?.Drop, ['ALL']);
      assert.deepEqual(init.EntryPoint, ['node'], 'not the image\'s ca-a2a entrypoint');
      assert.equal(init.Command?.length, 2, 'its own command, not the image\'s CMD after it');
      assert.equal(init.Command[0], '-e');
      assert.match(init.Command[1] ?? '', /^require\('node:fs'\)\.chmodSync\('\/tmp', 0o1777\)$/);
      // Keycloak writes its temporary files and, with a read-only root, its transaction log
      // (transaction recovery is on even without XA) under data/: without either it does not start.
      const keycloak = tasks.get('ca-a2a-keycloak')?.containers.find((c) => c.Name === 'keycloak');
      assert.deepEqual((keycloak?.MountPoints ?? []).map((m) => [m.ContainerPath, m.ReadOnly]).sort(), [
        ['/opt/keycloak/data/tmp', false], ['/opt/keycloak/data/transaction-logs', false], ['/tmp', false],
      ]);
    });

    it("set every container's awslogs mode: blocking for our image, whose own bounded buffer drops and counts; non-blocking with a bounded buffer for Keycloak, the collector and the Service Connect proxies", () => {
      const tasks = taskDefinitions(resources);
      const ours = (c: { Image?: unknown }): boolean => JSON.stringify(c.Image).includes('/ca-a2a:');
      const blocking = { mode: 'blocking', 'max-buffer-size': undefined };
      const nonBlocking = { mode: 'non-blocking', 'max-buffer-size': `${16 * 1024 * 1024}b` };
      const modeOf = (options: Record<string, unknown> | undefined) => ({ mode: options?.['mode'], 'max-buffer-size': options?.['max-buffer-size'] });
      let containers = 0;
      for (const family of families) {
        for (const c of tasks.get(family)?.containers ?? []) {
          containers++;
          assert.deepEqual(modeOf(c.LogConfiguration?.Options), ours(c) ? blocking : nonBlocking, `${family}/${c.Name}`);
        }
      }
      // The sidecar and its upstream in each secured task, the admin task's revocations-migrate,
      // Keycloak, the collector and its scratch opener.
      assert.equal(containers, 2 * SECURED.length + 4);
      const proxies = ofType(resources, 'AWS::ECS::Service').flatMap(([, service]) => {
        const connect = props(service)['ServiceConnectConfiguration'] as { LogConfiguration?: { Options?: Record<string, unknown> } } | undefined;
        return connect === undefined ? [] : [[props(service)['ServiceName'], modeOf(connect.LogConfiguration?.Options)]];
      });
      assert.equal(proxies.length, SECURED.length + 1, 'every service but the scraper runs a Service Connect proxy');
      for (const [service, mode] of proxies) assert.deepEqual(mode, nonBlocking, `${String(service)} Service Connect proxy`);
    });

    it('inject every credential as an ECS secret, never as a plain environment value', () => {
      const secretish = /(SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL)/;
      const tasks = taskDefinitions(resources);
      for (const family of families) {
        for (const c of tasks.get(family)?.containers ?? []) {
          for (const env of c.Environment ?? []) {
            assert.doesNotMatch(env.Name, secretish, `${family}/${c.Name} env ${env.Name}`);
            assert.doesNotMatch(JSON.stringify(env.Value), /resolve:secretsmanager|SecretString/, `${family}/${c.Name} env ${env.Name}`);
          }
        }
      }
      const secretsOf = (family: string, container: string): string[] =>
        (tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets ?? []).map((s) => s.Name).sort();
      for (const agent of AGENTS) assert.deepEqual(secretsOf(`ca-a2a-${agent}`, 'sidecar'), ['CA_A2A_CLIENT_SECRET', 'DATABASE_URL', 'REDIS_URL']);
      assert.deepEqual(secretsOf('ca-a2a-admin', 'sidecar'), ['DATABASE_URL', 'REDIS_URL']);
      assert.deepEqual(secretsOf('ca-a2a-admin', 'admin-api'), ['DATABASE_URL', 'REDIS_URL']);
      assert.deepEqual(secretsOf('ca-a2a-admin', 'revocations-migrate'), ['CA_A2A_REVOCATIONS_READER_URL', 'DATABASE_URL']);
      assert.deepEqual(secretsOf('ca-a2a-mcp', 'sidecar'), ['DATABASE_URL', 'REDIS_URL']);
      assert.deepEqual(secretsOf('ca-a2a-mcp', 'mcp-gateway'), ['DATABASE_URL']);
      // Same variable, different databases: the sidecar's is the revocations cluster, never documents.
      const databaseSecret = (family: string, container: string): string =>
        JSON.stringify(tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets?.find((secret) => secret.Name === 'DATABASE_URL')?.ValueFrom);
      assert.match(databaseSecret('ca-a2a-mcp', 'sidecar'), /RevocationsDbReaderUrl/);
      assert.match(databaseSecret('ca-a2a-mcp', 'mcp-gateway'), /DocumentsDbUrl/);
      assert.ok(secretsOf('ca-a2a-keycloak', 'keycloak').includes('KC_DB_PASSWORD'));
      // Keycloak's realm import substitutes ${CA_A2A_CLIENT_SECRET_*}: each one must be injected.
      const realm = readFileSync(fileURLToPath(new URL('../../deploy/keycloak/realm-ca-a2a.json', import.meta.url)), 'utf8');
      const placeholders = [...new Set([...realm.matchAll(/\$\{(CA_A2A_[A-Z_]+)\}/g)].map((m) => m[1] ?? ''))].sort();
      assert.ok(placeholders.length > 0);
      assert.deepEqual(placeholders.filter((name) => !secretsOf('ca-a2a-keycloak', 'keycloak').includes(name)), []);
    });

    it('register every service in the ca-a2a.local namespace with Service Connect TLS', () => {
      template.hasResourceProperties('AWS::ServiceDiscovery::PrivateDnsNamespace', { Name: 'ca-a2a.local' });
      template.hasResourceProperties('AWS::ACMPCA::CertificateAuthority', { UsageMode: 'SHORT_LIVED_CERTIFICATE' });
      for (const [, service] of ofType(resources, 'AWS::ECS::Service')) {
        if (props(service)['ServiceName'] === 'ca-a2a-metrics-scraper') continue;
        const connect = props(service)['ServiceConnectConfiguration'] as { Enabled: boolean; Services: Array<{ Tls?: { IssuerCertificateAuthority: unknown } }> };
        assert.equal(connect.Enabled, true);
        assert.ok(connect.Services.length === 1 && connect.Services[0]?.Tls?.IssuerCertificateAuthority !== undefined, String(props(service)['ServiceName']));
      }
    });
  });

  describe('keycloak', () => {
    const keycloakEnv = (resourcesOf: Resources): Record<string, unknown> => Object.fromEntries(
      (taskDefinitions(resourcesOf).get('ca-a2a-keycloak')?.containers.find((c) => c.Name === 'keycloak')?.Environment ?? []).map((e) => [e.Name, e.Value]),
    );
    const sidecarIssuers = (resourcesOf: Resources): unknown[] => SECURED.map((service) => {
      const args = taskDefinitions(resourcesOf).get(`ca-a2a-${service}`)?.containers.find((c) => c.Name === 'sidecar')?.Command ?? [];
      return args[args.indexOf('--issuer') + 1];
    });

    it('runs Keycloak 26.4 or later by default, the version deploy/keycloak/Dockerfile builds and compose runs', () => {
      const container = taskDefinitions(resources).get('ca-a2a-keycloak')?.containers.find((c) => c.Name === 'keycloak') as { Image?: unknown } | undefined;
      const tag = /\/ca-a2a-keycloak:([^"]+)"/.exec(JSON.stringify(container?.Image))?.[1];
      assert.ok(tag !== undefined && atLeast(tag, 26, 4), `default keycloakTag ${String(tag)}: jdbc-ping needs 26.1, DPoP without --features 26.4`);
      assert.equal(dockerfileKeycloakVersion(), tag);
      assert.match(repoFile('deploy/compose.yaml'), new RegExp(`image: quay\\.io/keycloak/keycloak:${tag.replaceAll('.', '\\.')}\\s`));
      assert.equal(keycloakEnv(resources)['KC_CACHE_STACK'], 'jdbc-ping');
    });

    it('gives the orchestrator\'s sidecar the PublicUrl parameter as --public-url, defaulted only by -c publicUrl=', () => {
      const publicUrlOf = (resourcesOf: Resources): unknown => {
        const args: unknown[] = taskDefinitions(resourcesOf).get('ca-a2a-orchestrator')?.containers.find((c) => c.Name === 'sidecar')?.Command ?? [];
        return args[args.indexOf('--public-url') + 1];
      };
      assert.deepEqual(publicUrlOf(resources), { Ref: 'PublicUrl' });
      const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-public-'));
      try {
        const { stack } = createApp({ outdir: dir, context: { publicUrl: 'https://agents.acme.test' } });
        Template.fromStack(stack).hasParameter('PublicUrl', { Default: 'https://agents.acme.test' });
        for (const bad of ['http://agents.acme.test', 'agents.acme.test', 'https://agents.acme.test/?x=1']) {
          assert.throws(() => createApp({ outdir: dir, context: { publicUrl: bad } }), /context publicUrl must be/, bad);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('advertises in every agent\'s card the issuer its sidecar trusts, and in the orchestrator\'s the https URL callers reach it by', () => {
      const envOf = (family: string): Record<string, unknown> => Object.fromEntries(
        (taskDefinitions(resources).get(family)?.containers.find((c) => c.Name === 'agent')?.Environment ?? []).map((e) => [e.Name, e.Value]),
      );
      for (const agent of AGENTS) {
        assert.equal(envOf(`ca-a2a-${agent}`)['CA_A2A_ISSUER'], 'http://keycloak.ca-a2a.local:8080/realms/ca-a2a', `${agent} card: the OIDC scheme`);
      }
      // Without it the card says http://<Host>/message: the ALB ended TLS, and serves no plain http.
      assert.deepEqual(envOf('ca-a2a-orchestrator')['CA_A2A_PUBLIC_URL'], { 'Fn::Join': ['', [{ Ref: 'PublicUrl' }, '/message']] });
      for (const agent of ['extractor', 'validator', 'archivist']) assert.equal(envOf(`ca-a2a-${agent}`)['CA_A2A_PUBLIC_URL'], undefined, agent);
      // PublicUrl + /message must be the URL the sidecar expects in DPoP htu: a trailing slash would make it //message.
      const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-card-'));
      try {
        assert.throws(() => createApp({ outdir: dir, context: { publicUrl: 'https://agents.acme.test/' } }), /context publicUrl must be/);
        assert.throws(() => createApp({ outdir: dir, context: { publicUrl: 'https://agents.acme.test/a2a/' } }), /context publicUrl must be/);
        assert.doesNotThrow(() => createApp({ outdir: dir, context: { publicUrl: 'https://agents.acme.test/a2a' } }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('issues tokens whose iss is every sidecar\'s --issuer, also for an issuer the operator sets', () => {
      const kcIssuer = (resourcesOf: Resources): string => `${String(keycloakEnv(resourcesOf)['KC_HOSTNAME'])}/realms/ca-a2a`;
      assert.deepEqual(new Set(sidecarIssuers(resources)), new Set([kcIssuer(resources)]));
      const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-issuer-'));
      try {
        const issuer = 'https://id.example.com/realms/ca-a2a';
        const { stack } = createApp({ outdir: dir, context: { issuerUrl: issuer } });
        const other = Template.fromStack(stack).toJSON()['Resources'] as Resources;
        assert.equal(kcIssuer(other), issuer);
        assert.deepEqual(new Set(sidecarIssuers(other)), new Set([issuer]));
        for (const bad of ['https://id.example.com/realms/other', 'https://id.example.com/realms/ca-a2a?x=1', 'id.example.com/realms/ca-a2a']) {
          assert.throws(() => createApp({ outdir: dir, context: { issuerUrl: bad } }), /context issuerUrl must be/, bad);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('verifies the Aurora server certificate against the RDS CA bundle its image carries', () => {
      const properties = String(keycloakEnv(resources)['KC_DB_URL_PROPERTIES']);
      const params = new URLSearchParams(properties.replace(/^\?/, ''));
      assert.equal(params.get('sslmode'), 'verify-full', properties);
      const bundle = params.get('sslrootcert') ?? '';
      assert.ok(bundle.startsWith('/'), properties);
      const installs = [...repoFile('deploy/keycloak/Dockerfile').matchAll(/^(?:ADD|COPY)\s.*\s(\S+)$/gm)].map((m) => m[1]);
      assert.ok(installs.includes(bundle), `deploy/keycloak/Dockerfile installs ${bundle}: ${installs.join(', ')}`);
    });

    it('is built from deploy/keycloak as its own context, as docs/deploy.md shows', () => {
      const dockerfile = repoFile('deploy/keycloak/Dockerfile');
      const sources = [...dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)].map((m) => m[1] ?? '');
      assert.ok(sources.length > 0);
      for (const source of sources) {
        assert.doesNotThrow(() => repoFile(`deploy/keycloak/${source}`), `COPY ${source}: not in the build context deploy/keycloak`);
      }
      assert.match(repoFile('docs/deploy.md'), /^docker build -t ca-a2a-keycloak:\S+ deploy\/keycloak$/m);
    });
  });

  describe('operations', () => {
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

  describe('alerts', () => {
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

  describe('ingress', () => {
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

  describe('data', () => {
    it('runs encrypted Aurora PostgreSQL with 7-day backups: one cluster for MCP, one for Keycloak, one for revocations', () => {
      const clusters = ofType(resources, 'AWS::RDS::DBCluster');
      assert.equal(clusters.length, 3);
      const names = new Map(ofType(resources, 'AWS::EC2::SecurityGroup').map(([id, g]) => [id, String(props(g)['GroupDescription'])]));
      const groups = clusters.map(([, c]) => {
        assert.equal(props(c)['Engine'], 'aurora-postgresql');
        assert.equal(props(c)['StorageEncrypted'], true);
        assert.equal(props(c)['BackupRetentionPeriod'], 7);
        return (props(c)['VpcSecurityGroupIds'] as unknown[]).map((v) => names.get(referencedId(v) ?? '')).join();
      });
      assert.deepEqual(groups.sort(), [sg('documentsDb'), sg('keycloakDb'), sg('revocationsDb')].sort());
    });

    it('runs Redis with TLS and encryption at rest, and one ACL user per party instead of one AUTH token for all', () => {
      template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
        TransitEncryptionEnabled: true,
        TransitEncryptionMode: 'required',
        AtRestEncryptionEnabled: true,
      });
      const [[, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElastiCache::ReplicationGroup');
      assert.equal(props(group)['AuthToken'], undefined, 'no token that opens every command');
      const userGroups = props(group)['UserGroupIds'] as unknown[];
      assert.equal(userGroups.length, 1);
      const userGroup = resources[referencedId(userGroups[0]) ?? ''];
      assert.equal(userGroup?.Type, 'AWS::ElastiCache::UserGroup');
      const members = (props(userGroup ?? { Type: '' })['UserIds'] as unknown[]).map((ref) => resources[referencedId(ref) ?? '']);
      const byName = new Map(members.map((user) => [String(props(user ?? { Type: '' })['UserName']), props(user ?? { Type: '' })]));
      assert.deepEqual([...byName.keys()].sort(), ['ca-a2a-admin', 'ca-a2a-sidecar', 'default']);
      // Exactly the rules test/deploy/redis-acl.test.ts runs the real stores on.
      assert.equal(byName.get('ca-a2a-sidecar')?.['AccessString'], redisAclRules('sidecar').join(' '));
      assert.equal(byName.get('ca-a2a-admin')?.['AccessString'], redisAclRules('admin').join(' '));
      assert.equal(byName.get('default')?.['AccessString'], 'off -@all');
      for (const user of byName.values()) assert.match(JSON.stringify(user['Passwords']), /\{\{resolve:secretsmanager:/);
      // Every sidecar on the sidecar user; the admin API, alone, on the admin user.
      const tasks = taskDefinitions(resources);
      const redisSecret = (family: string, container: string): string | undefined =>
        referencedId(tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets?.find((secret) => secret.Name === 'REDIS_URL')?.ValueFrom);
      const url = (id: string | undefined): string => JSON.stringify(props(resources[id ?? ''] ?? { Type: '' })['SecretString']);
      for (const service of SECURED) assert.match(url(redisSecret(`ca-a2a-${service}`, 'sidecar')), /"rediss:\/\/ca-a2a-sidecar:/, service);
      assert.match(url(redisSecret('ca-a2a-admin', 'admin-api')), /"rediss:\/\/ca-a2a-admin:/);
      const holders = [...tasks.values()].flatMap((task) => task.containers.filter((c) => (c.Secrets ?? []).some((secret) => referencedId(secret.ValueFrom) === redisSecret('ca-a2a-admin', 'admin-api'))).map((c) => c.Name));
      assert.deepEqual(holders, ['admin-api']);
    });

    it('never lets Redis evict: a full Redis refuses writes (the sidecars fail closed) instead of forgetting replay ids', () => {
      const [[, group] = ['', { Type: '' }]] = ofType(resources, 'AWS::ElastiCache::ReplicationGroup');
      const parameters = resources[referencedId(props(group)['CacheParameterGroupName']) ?? ''];
      assert.ok(parameters, 'the group names a parameter group of the stack');
      assert.equal(parameters.Type, 'AWS::ElastiCache::ParameterGroup');
      assert.equal(props(parameters)['CacheParameterGroupFamily'], 'redis7');
      assert.deepEqual(props(parameters)['Properties'], { 'maxmemory-policy': 'noeviction' });
    });

    it('keeps documents in a versioned, encrypted, private, TLS-only, access-logged bucket', () => {
      template.hasResourceProperties('AWS::S3::Bucket', {
        VersioningConfiguration: { Status: 'Enabled' },
        BucketEncryption: { ServerSideEncryptionConfiguration: [Match.objectLike({ ServerSideEncryptionByDefault: Match.objectLike({ SSEAlgorithm: 'aws:kms' }) })] },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        LoggingConfiguration: Match.objectLike({ DestinationBucketName: Match.anyValue() }),
      });
      for (const [id, policy] of ofType(resources, 'AWS::S3::BucketPolicy')) {
        const statements = (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement;
        assert.ok(statements.some((s) => s['Effect'] === 'Deny' && JSON.stringify(s['Condition']).includes('"aws:SecureTransport":"false"')), `${id} refuses plain HTTP`);
      }
    });
  });

  describe('IAM', () => {
    /** Logical ids of the roles of one task family (task role and execution role). */
    const rolesOf = (family: string): Set<string> => {
      const task = taskDefinitions(resources).get(family);
      assert.ok(task);
      return new Set([props(task.resource)['TaskRoleArn'], props(task.resource)['ExecutionRoleArn']].map(referencedId).filter((id): id is string => id !== undefined));
    };
    /** Roles whose attached policies mention any of the given logical ids. */
    const rolesTouching = (predicate: (id: string) => boolean): Set<string> => {
      const ids = Object.keys(resources).filter(predicate);
      const roles = new Set<string>();
      for (const [, policy] of ofType(resources, 'AWS::IAM::Policy')) {
        const text = JSON.stringify(props(policy)['PolicyDocument']);
        if (!ids.some((id) => text.includes(`"${id}"`))) continue;
        for (const role of props(policy)['Roles'] as unknown[]) roles.add(referencedId(role) ?? '?');
      }
      return roles;
    };

    it('lets only the MCP task role touch the documents bucket and its key', () => {
      const bucketOrKey = (id: string): boolean => ['AWS::S3::Bucket', 'AWS::KMS::Key'].includes(resources[id]?.Type ?? '') && id.startsWith('DataDocuments');
      const roles = rolesTouching(bucketOrKey);
      const mcpTaskRole = referencedId(props(taskDefinitions(resources).get('ca-a2a-mcp')?.resource ?? { Type: '' })['TaskRoleArn']);
      assert.deepEqual([...roles], [mcpTaskRole]);
    });

    it('gives every sidecar the revocations database as revocations_reader, and its owner\'s URL only to the admin API and the migrate step that runs before it', () => {
      const tasks = taskDefinitions(resources);
      const secretOf = (family: string, container: string, name: string): string | undefined =>
        referencedId(tasks.get(family)?.containers.find((c) => c.Name === container)?.Secrets?.find((secret) => secret.Name === name)?.ValueFrom);
      const reader = secretOf('ca-a2a-admin', 'revocations-migrate', 'CA_A2A_REVOCATIONS_READER_URL');
      const owner = secretOf('ca-a2a-admin', 'revocations-migrate', 'DATABASE_URL');
      assert.ok(reader && owner && reader !== owner);
      for (const service of SECURED) assert.equal(secretOf(`ca-a2a-${service}`, 'sidecar', 'DATABASE_URL'), reader, `${service} sidecar`);
      assert.equal(secretOf('ca-a2a-admin', 'admin-api', 'DATABASE_URL'), owner);
      const url = (id: string): string => JSON.stringify(props(resources[id] ?? { Type: '' })['SecretString']);
      assert.match(url(reader), /postgres:\/\/revocations_reader:.*\/revocations\?sslmode=verify-full/);
      assert.match(url(owner), /postgres:\/\/revocations:/);
      // Run to completion before the admin API starts, which does not start if it failed.
      const admin = tasks.get('ca-a2a-admin')?.containers ?? [];
      const migrate = admin.find((c) => c.Name === 'revocations-migrate');
      assert.equal(migrate?.Essential, false);
      assert.deepEqual(migrate?.Command, ['revoke', 'migrate']);
      assert.match(JSON.stringify(migrate?.Image), /\/ca-a2a:/);
      assert.deepEqual(admin.find((c) => c.Name === 'admin-api')?.DependsOn, [{ ContainerName: 'revocations-migrate', Condition: 'SUCCESS' }]);
      // Only the admin task's roles may read the owner's URL and the master secret.
      const ownerSecrets = (id: string): boolean => id === owner
        || (resources[id]?.Type === 'AWS::SecretsManager::Secret' && /^DataRevocationsDbCluster/.test(id))
        || (resources[id]?.Type === 'AWS::SecretsManager::SecretTargetAttachment' && /^DataRevocationsDb/.test(id));
      const touching = rolesTouching(ownerSecrets);
      const adminRoles = rolesOf('ca-a2a-admin');
      assert.ok(touching.size > 0 && [...touching].every((role) => adminRoles.has(role)), [...touching].join());
    });

    it('lets only the MCP task read the documents database secrets, and only Keycloak its own', () => {
      const secret = (prefix: string) => (id: string): boolean =>
        ['AWS::SecretsManager::Secret', 'AWS::SecretsManager::SecretTargetAttachment'].includes(resources[id]?.Type ?? '') && (id.startsWith(prefix) || id.startsWith(`CaA2a${prefix}`));
      const mcp = rolesOf('ca-a2a-mcp');
      const documents = rolesTouching(secret('DataDocumentsDb'));
      assert.ok(documents.size > 0 && [...documents].every((role) => mcp.has(role)), [...documents].join());
      const keycloak = rolesOf('ca-a2a-keycloak');
      const keycloakDb = rolesTouching(secret('DataKeycloakDb'));
      assert.ok(keycloakDb.size > 0 && [...keycloakDb].every((role) => keycloak.has(role)), [...keycloakDb].join());
    });

    it('pulls the collector image from ECR Public through this account\'s ECR (a pull-through cache rule), whose repository alone the scraper may create', () => {
      const [[, rule] = ['', { Type: '' }], ...more] = ofType(resources, 'AWS::ECR::PullThroughCacheRule');
      assert.equal(more.length, 0);
      assert.deepEqual([props(rule)['UpstreamRegistryUrl'], props(rule)['EcrRepositoryPrefix']], ['public.ecr.aws', 'ca-a2a-ecr-public']);
      const collector = taskDefinitions(resources).get('ca-a2a-metrics-scraper')?.containers.find((c) => c.Name === 'collector');
      const image = JSON.stringify(collector?.Image);
      assert.match(image, /\.dkr\.ecr\..*\/ca-a2a-ecr-public\/aws-observability\/aws-otel-collector:v0\.43\.3/);
      assert.doesNotMatch(image, /"public\.ecr\.aws/);
      const imports = ofType(resources, 'AWS::IAM::Policy').flatMap(([, policy]) =>
        (props(policy)['PolicyDocument'] as { Statement: Array<{ Action: unknown; Resource: unknown }> }).Statement
          .filter((statement) => JSON.stringify(statement.Action).includes('ecr:BatchImportUpstreamImage')));
      assert.equal(imports.length, 1);
      assert.match(JSON.stringify(imports[0]?.Resource), /repository\/ca-a2a-ecr-public\/aws-observability\/aws-otel-collector"/);
      const dir = mkdtempSync(path.join(tmpdir(), 'ca-a2a-cdk-collector-'));
      try {
        assert.throws(() => createApp({ outdir: dir, context: { collectorImage: 'otel/opentelemetry-collector:0.1' } }), /context collectorImage must be public\.ecr\.aws/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('holds the metrics scraper\'s describe calls to this cluster', () => {
      const scraper = rolesOf('ca-a2a-metrics-scraper');
      const statements = ofType(resources, 'AWS::IAM::Policy')
        .filter(([, policy]) => (props(policy)['Roles'] as unknown[]).some((role) => scraper.has(referencedId(role) ?? '')))
        .flatMap(([, policy]) => (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement);
      const describe = statements.filter((s) => [s['Action']].flat().some((a) => /^ecs:Describe(Tasks|Services|ContainerInstances)$/.test(String(a))));
      assert.equal(describe.length, 1);
      const arns = [describe[0]?.['Resource']].flat().map((r) => JSON.stringify(r));
      assert.equal(arns.length, 3);
      const [[clusterId] = ['']] = ofType(resources, 'AWS::ECS::Cluster');
      for (const kind of ['task', 'service', 'container-instance']) {
        assert.ok(arns.some((arn) => arn.includes(`:${kind}/",{"Ref":"${clusterId}"},"/*"]]}`)), `${kind}: ${arns.join(' ')}`);
      }
      const wildcard = statements.filter((s) => s['Resource'] === '*').flatMap((s) => [s['Action']].flat()).map(String).sort();
      // ecr:GetAuthorizationToken (no resource-level permission either): its execution role pulls our image, for the scratch opener.
      assert.deepEqual(wildcard, ['ec2:DescribeInstances', 'ecr:GetAuthorizationToken', 'ecs:DescribeTaskDefinition', 'ecs:ListServices', 'ecs:ListTasks']);
    });

    it('names every action of every IAM policy: no wildcard actions', () => {
      for (const [id, policy] of ofType(resources, 'AWS::IAM::Policy')) {
        for (const statement of (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement) {
          for (const action of [statement['Action']].flat()) assert.doesNotMatch(String(action), /\*/, `${id}: ${String(action)}`);
        }
      }
    });

    it('grants the MCP task role the objects under its S3 prefixes only, no version deletes, and the key only through S3', () => {
      const mcp = taskDefinitions(resources).get('ca-a2a-mcp');
      const taskRole = referencedId(props(mcp?.resource ?? { Type: '' })['TaskRoleArn']);
      const statements = ofType(resources, 'AWS::IAM::Policy')
        .filter(([, policy]) => (props(policy)['Roles'] as unknown[]).some((role) => referencedId(role) === taskRole))
        .flatMap(([, policy]) => (props(policy)['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement);
      const prefixes = mcp?.containers.find((c) => c.Name === 'mcp-gateway')?.Environment?.find((e) => e.Name === 'CA_A2A_S3_PREFIXES')?.Value;
      assert.equal(prefixes, 'uploads/,archive/', 'the gateway is told the prefixes its role is scoped to');
      const objectStatements = statements.filter((s) => [s['Action']].flat().some((a) => /^s3:.*Object/.test(String(a))));
      assert.deepEqual(objectStatements.flatMap((s) => [s['Action']].flat()).sort(), ['s3:DeleteObject', 's3:GetObject', 's3:PutObject']);
      const objectArns = objectStatements.flatMap((s) => [s['Resource']].flat()).map((r) => JSON.stringify(r)).sort();
      assert.deepEqual(objectArns.map((arn) => /"(\/[^"]*)"\]\]\}$/.exec(arn)?.[1]), ['/archive/*', '/uploads/*']);
      const kms = statements.filter((s) => [s['Action']].flat().some((a) => String(a).startsWith('kms:')));
      assert.equal(kms.length, 1);
      assert.deepEqual([kms[0]?.['Action']].flat().sort(), ['kms:Decrypt', 'kms:GenerateDataKey']);
      assert.deepEqual(kms[0]?.['Condition'], { StringEquals: { 'kms:ViaService': 's3.eu-west-3.amazonaws.com' } });
      const all = statements.flatMap((s) => [s['Action']].flat()).map(String);
      assert.deepEqual(all.filter((a) => !['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:ListBucket', 'kms:Decrypt', 'kms:GenerateDataKey'].includes(a)), []);
    });

    it('limits the S3 endpoint to ECR layers and, for the documents bucket, to the MCP task role', () => {
      const [endpoint] = ofType(resources, 'AWS::EC2::VPCEndpoint').filter(([, e]) => props(e)['VpcEndpointType'] === 'Gateway');
      const statements = (props(endpoint?.[1] ?? { Type: '' })['PolicyDocument'] as { Statement: Array<Record<string, unknown>> }).Statement;
      const documents = statements.find((s) => s['Sid'] === 'DocumentsBucketMcpOnly');
      const mcpTaskRole = referencedId(props(taskDefinitions(resources).get('ca-a2a-mcp')?.resource ?? { Type: '' })['TaskRoleArn']);
      assert.equal(referencedId((documents?.['Principal'] as { AWS: unknown }).AWS), mcpTaskRole);
      assert.deepEqual(statements.map((s) => s['Sid']).sort(), ['DocumentsBucketMcpOnly', 'EcrImageLayers']);
    });
  });

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
