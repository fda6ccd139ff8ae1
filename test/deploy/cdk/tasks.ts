/**
 * The ECS services and their task definitions.
 * Cases of test/deploy/cdk.test.ts, which calls `taskTests()` inside its suite: not a `.test.ts`
 * file, which the runner would give a process, and a synthesis of the stack, of its own.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import type { Template } from 'aws-cdk-lib/assertions';
import { ofType, props, taskDefinitions, type Resources } from '../cfn.js';
import { unknownToCommand } from '../cli-help.js';
import { AGENTS, defaultStack, repoFile, SECURED, SIDECAR_PORTS } from './default-stack.js';

/** The metrics scraper's one-shot container that makes its scratch volume writable. */
const SCRATCH_INIT = 'scratch-init';
/** The paths the last stage of a Dockerfile declares with VOLUME (exec or shell form). */
const dockerVolumes = (relative: string): Set<string> => {
  const lines = repoFile(relative).replaceAll(/\\\n/g, ' ').split('\n').map((line) => line.trim());
  const last = lines.slice(lines.findLastIndex((line) => line.startsWith('FROM ')));
  return new Set(last.filter((line) => line.startsWith('VOLUME ')).flatMap((line) => {
    const args = line.slice('VOLUME '.length).trim();
    return args.startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  }));
};

export function taskTests(): void {
  describe('tasks', () => {
    let resources: Resources;
    let template: Template;
    before(() => ({ resources, template } = defaultStack()));

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
      const realm = readFileSync(fileURLToPath(new URL('../../../deploy/keycloak/realm-ca-a2a.json', import.meta.url)), 'utf8');
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
}
