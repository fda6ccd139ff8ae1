/**
 * Keycloak, the issuer every sidecar trusts.
 * Cases of test/deploy/cdk.test.ts, which calls `keycloakTests()` inside its suite: not a
 * `.test.ts` file, which the runner would give a process, and a synthesis of the stack, of its
 * own.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { createApp } from '../../../deploy/cdk/app.js';
import { taskDefinitions, type Resources } from '../cfn.js';
import { AGENTS, defaultStack, repoFile, SECURED } from './default-stack.js';

/** The Keycloak version deploy/keycloak/Dockerfile builds from (its KEYCLOAK_VERSION default). */
const dockerfileKeycloakVersion = (): string | undefined => /^ARG KEYCLOAK_VERSION=(\S+)$/m.exec(repoFile('deploy/keycloak/Dockerfile'))?.[1];
const atLeast = (version: string, major: number, minor: number): boolean => {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
};

export function keycloakTests(): void {
  describe('keycloak', () => {
    let resources: Resources;
    before(() => ({ resources } = defaultStack()));

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
}
