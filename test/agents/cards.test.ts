import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { buildAgentCard } from '../../agents/shared/agent-card.js';
import { AGENT_NAMES } from '../../agents/registry.js';
import { startTestIssuer } from '../helpers/test-issuer.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

const POLICIES = new URL('../../policies/', import.meta.url);

/** The methods of a service policy with their params schema read straight from policies/schemas/. */
function policyMethods(service: string): Map<string, unknown> {
  const policy = parse(readFileSync(new URL(`services/${service}.yaml`, POLICIES), 'utf8')) as { methods: Record<string, { params: { $ref: string } }> };
  return new Map(Object.entries(policy.methods).map(([name, method]) => {
    const { $id: _id, ...schema } = JSON.parse(readFileSync(new URL(method.params.$ref.replace('../', ''), POLICIES), 'utf8')) as Record<string, unknown>;
    return [name, schema];
  }));
}

describe('agent cards', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack();
  });
  after(async () => {
    await stack.close();
  });

  for (const name of AGENT_NAMES) {
    it(`${name} lists exactly its policy's methods with the policy's params schemas, at both paths`, async () => {
      const agent = stack.agents.get(name);
      assert.ok(agent);
      const expected = policyMethods(name);
      for (const path of ['/.well-known/agent-card.json', '/card']) {
        const res = await fetch(`${agent.url}${path}`);
        assert.equal(res.status, 200);
        const card = (await res.json()) as { name: string; url: string; skills: { id: string; params_schema: unknown }[]; protocolVersion: string };
        assert.equal(card.name, name);
        assert.equal(card.url, `${agent.url}/message`);
        assert.equal(card.protocolVersion, '0.3.0');
        assert.deepEqual(card.skills.map((s) => s.id).sort(), [...expected.keys()].sort());
        for (const skill of card.skills) assert.deepEqual(skill.params_schema, expected.get(skill.id), `${name}.${skill.id}`);
      }
      const health = await fetch(`${agent.url}/health`);
      assert.deepEqual(await health.json(), { status: 'ok', agent: name });
    });
  }

  it('accepts {"document_id": UUID} as complete params of every document method', async () => {
    const documentMethods = [...AGENT_NAMES.flatMap((name) => [...policyMethods(name).entries()].map(([method, schema]) => ({ name, method, schema })))]
      .filter(({ schema }) => JSON.stringify((schema as { required?: string[] }).required) === '["document_id"]');
    assert.equal(documentMethods.length, 7);
    for (const { name, method } of documentMethods) {
      const answer = await stack.call(name, method, { document_id: crypto.randomUUID() });
      // Params are valid, so the agent looks the document up: not_found, never invalid params.
      assert.equal(answer.error?.data?.['reason'], 'not_found', `${name}.${method}: ${JSON.stringify(answer)}`);
    }
  });
});

describe('agent card security scheme', () => {
  it('points at the issuer\'s discovery document whether the issuer is written with a trailing slash or not', async () => {
    const idp = await startTestIssuer();
    try {
      for (const issuer of [idp.issuer, `${idp.issuer}/`]) {
        const card = buildAgentCard({ name: 'x', description: 'x', url: 'http://127.0.0.1:1/message', methods: [], issuer }) as {
          securitySchemes: { oidc: { openIdConnectUrl: string } };
        };
        const url = card.securitySchemes.oidc.openIdConnectUrl;
        assert.equal(url, `${idp.issuer}/.well-known/openid-configuration`);
        const res = await fetch(url);
        assert.equal(res.status, 200);
        assert.equal(((await res.json()) as { issuer: string }).issuer, idp.issuer);
      }
    } finally {
      await idp.close();
    }
  });
});
