import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { parse } from 'yaml';
import type { McpGateway } from '../../mcp/gateway.js';
import { TOOL_NAMES } from '../../mcp/tools/tool-definitions.js';
import { signedHeaders } from '../../proxy/client/signed-headers.js';
import { createProofKey, type ProofKey } from '../../proxy/integrity/proof.js';
import { shippedPolicyFile } from '../../proxy/services.js';
import { startSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { startTestGateway } from './helpers.js';

/**
 * The shipped MCP policy, end to end: the SDK's own Client talks Streamable HTTP to a real sidecar
 * (policies/services/mcp.yaml + rbac.yaml) in front of a real gateway on PostgreSQL and the
 * local-disk bucket. Every request carries a token, a fresh DPoP proof and a Content-Digest.
 */
const AGENT_ROLES = ['extractor', 'validator', 'archivist', 'orchestrator', 'admin'] as const;
type Role = (typeof AGENT_ROLES)[number] | 'viewer';

/**
 * The tools a role may call on the mcp service, read from the reviewed golden access matrix
 * (test/policy/__snapshots__/access-matrix.json), not from the code that filters tools/list.
 */
function grantedTools(role: Role): string[] {
  const matrices = JSON.parse(readFileSync(new URL('../policy/__snapshots__/access-matrix.json', import.meta.url), 'utf8')) as { service: string; tools: Record<string, Record<string, string>> }[];
  const mcp = matrices.find((matrix) => matrix.service === 'mcp');
  assert.ok(mcp, 'the golden matrix has the mcp service');
  return Object.entries(mcp.tools).filter(([, cells]) => cells[role] === 'allow' || cells[role] === 'allow-args').map(([tool]) => tool).sort();
}

/** A fetch for the SDK transport that signs each request as a real client does (docs/integrity.md). */
function signingFetch(token: string, key: ProofKey): FetchLike {
  return async (url, init = {}) => {
    const target = new URL(url);
    const method = init.method ?? 'GET';
    const body = typeof init.body === 'string' ? init.body : undefined;
    const headers = new Headers(init.headers);
    const signed = await signedHeaders({ key, accessToken: token, tokenType: 'Bearer', method, url: `${target.origin}${target.pathname}`, body });
    for (const [name, value] of Object.entries(signed)) headers.set(name, value);
    return fetch(url, { ...init, headers });
  };
}

/** The sum over every outcome of one tool's ca_a2a_mcp_tool_calls_total on the gateway's /metrics. */
async function gatewayCalls(gatewayUrl: string, tool: string): Promise<number> {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('ca_a2a_mcp_tool_calls_total{') && line.includes(`tool="${tool}"`)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

interface RefusalBody { error?: { code: number; data?: { reason?: string } } }

describe('MCP gateway behind its sidecar with the shipped policy', () => {
  let issuer: TestIssuer;
  let gateway: McpGateway;
  let sidecar: Sidecar;
  let proofKey: ProofKey;
  let gatewayLines: Record<string, unknown>[];
  const sidecarAudit = new AuditCapture();
  const tokens = new Map<Role, string>();
  const clients: Client[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  const tokenFor = (role: Role): string => tokens.get(role) as string;

  async function connect(role: Role): Promise<Client> {
    const client = new Client({ name: `test-${role}`, version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { fetch: signingFetch(tokenFor(role), proofKey) });
    await client.connect(transport);
    clients.push(client);
    return client;
  }

  /** The seed's POST /call_tool through the sidecar, signed. */
  async function callToolAs(role: Role, tool: string, args: unknown): Promise<{ status: number; body: Record<string, unknown> & RefusalBody }> {
    const body = JSON.stringify({ tool, arguments: args });
    const url = `${sidecar.url}/call_tool`;
    const signed = await signedHeaders({ key: proofKey, accessToken: tokenFor(role), tokenType: 'Bearer', method: 'POST', url, body });
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...signed }, body });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & RefusalBody };
  }

  before(async () => {
    const started = await startTestGateway();
    cleanups.push(started.close);
    gateway = started.gateway;
    gatewayLines = started.lines;
    issuer = await startTestIssuer();
    cleanups.unshift(() => issuer.close());
    sidecar = await startSidecar({ policyFile: shippedPolicyFile('mcp'), upstream: gateway.url, issuer: issuer.issuer, logDestination: sidecarAudit, watchPolicy: false });
    cleanups.unshift(() => sidecar.close());
    proofKey = await createProofKey();
    for (const role of [...AGENT_ROLES, 'viewer'] as const) {
      tokens.set(role, await issuer.sign({ sub: `service-account-${role}`, azp: role, realm_access: { roles: [role] } }));
    }
  });

  after(async () => {
    for (const client of clients) await client.close();
    for (const cleanup of cleanups) await cleanup();
  });

  for (const role of AGENT_ROLES) {
    it(`lets the ${role} role initialize and list exactly the tools its grants allow`, async () => {
      const client = await connect(role);
      assert.equal(client.getServerVersion()?.name, 'ca-a2a-mcp-gateway');
      const { tools } = await client.listTools();
      const names = tools.map((tool) => tool.name).sort();
      assert.ok(names.length > 0);
      assert.deepEqual(names, grantedTools(role));
    });
  }

  it('cuts tools/list down to the caller\'s tools inside a batch too', async () => {
    const body = JSON.stringify([1, 2].map((id) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} })));
    const url = `${sidecar.url}/mcp`;
    const signed = await signedHeaders({ key: proofKey, accessToken: tokenFor('validator'), tokenType: 'Bearer', method: 'POST', url, body });
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...signed }, body });
    assert.equal(res.status, 200);
    const answers = (await res.json()) as { id: number; result?: { tools: { name: string }[] } }[];
    assert.deepEqual(answers.map((answer) => answer.id).sort(), [1, 2]);
    for (const answer of answers) assert.deepEqual(answer.result?.tools.map((tool) => tool.name).sort(), grantedTools('validator'), `answer ${answer.id}`);
  });

  it('hides s3_put_object and s3_delete_object from the validator, and shows admin every tool', async () => {
    const validator = (await (await connect('validator')).listTools()).tools.map((tool) => tool.name);
    assert.ok(validator.includes('s3_get_object'));
    assert.ok(!validator.includes('s3_put_object'));
    assert.ok(!validator.includes('s3_delete_object'));
    const admin = (await (await connect('admin')).listTools()).tools.map((tool) => tool.name);
    assert.deepEqual([...admin].sort(), [...TOOL_NAMES].sort());
  });

  it('refuses the validator s3_put_object at the sidecar with 403 authz.tool_denied; the gateway never sees it', async () => {
    const client = await connect('validator');
    const before = await gatewayCalls(gateway.url, 's3_put_object');
    const put = client.callTool({ name: 's3_put_object', arguments: { key: 'uploads/nope.txt', content_base64: 'aGk=', content_type: 'text/plain' } });
    await assert.rejects(put, (err: { code?: number; message?: string }) => err.code === 403 && /authz\.tool_denied/.test(err.message ?? ''));
    assert.equal(await gatewayCalls(gateway.url, 's3_put_object'), before);
    assert.equal(gatewayLines.filter((line) => line.event_type === 'mcp_tool_call' && line.tool === 's3_put_object').length, 0);
    const denied = sidecarAudit.lines.filter((line) => JSON.stringify(line).includes('authz.tool_denied') && JSON.stringify(line).includes('service-account-validator'));
    assert.ok(denied.length >= 1, 'the sidecar audits the refusal');
  });

  it('lets the validator read under uploads/ over MCP (the gateway answers not_found for a missing key)', async () => {
    const client = await connect('validator');
    const before = await gatewayCalls(gateway.url, 's3_get_object');
    const got = await client.callTool({ name: 's3_get_object', arguments: { key: 'uploads/missing.txt' } });
    assert.equal(got.isError, true);
    assert.equal((got.structuredContent as { error: { code: string } }).error.code, 'not_found');
    assert.equal(await gatewayCalls(gateway.url, 's3_get_object'), before + 1);
  });

  it('lets the archivist put under archive/ and refuses uploads/ with 403 authz.arguments_denied before the gateway', async () => {
    const client = await connect('archivist');
    const content = Buffer.from('archived bytes');
    const put = await client.callTool({ name: 's3_put_object', arguments: { key: 'archive/doc-1/a.txt', content_base64: content.toString('base64'), content_type: 'text/plain' } });
    assert.notEqual(put.isError, true);
    assert.equal((put.structuredContent as { key: string; size: number }).size, content.length);
    const before = await gatewayCalls(gateway.url, 's3_put_object');
    const refused = client.callTool({ name: 's3_put_object', arguments: { key: 'uploads/a.txt', content_base64: content.toString('base64'), content_type: 'text/plain' } });
    await assert.rejects(refused, (err: { code?: number; message?: string }) => err.code === 403 && /authz\.arguments_denied/.test(err.message ?? ''));
    assert.equal(await gatewayCalls(gateway.url, 's3_put_object'), before);
  });

  it('gives the seed POST /call_tool the same decisions through the sidecar', async () => {
    const args = (key: string) => ({ key, content_base64: Buffer.from('x').toString('base64'), content_type: 'text/plain' });
    const before = await gatewayCalls(gateway.url, 's3_put_object');

    const validatorPut = await callToolAs('validator', 's3_put_object', args('uploads/v.txt'));
    assert.equal(validatorPut.status, 403);
    assert.equal(validatorPut.body.error?.code, -32011);
    assert.equal(validatorPut.body.error?.data?.reason, 'authz.tool_denied');

    const archivistUploads = await callToolAs('archivist', 's3_put_object', args('uploads/a.txt'));
    assert.equal(archivistUploads.status, 403);
    assert.equal(archivistUploads.body.error?.data?.reason, 'authz.arguments_denied');
    assert.equal(await gatewayCalls(gateway.url, 's3_put_object'), before);

    const archivistArchive = await callToolAs('archivist', 's3_put_object', args('archive/doc-2/a.txt'));
    assert.equal(archivistArchive.status, 200);
    assert.equal(archivistArchive.body.success, true);
    assert.equal(archivistArchive.body.key, 'archive/doc-2/a.txt');
    assert.equal(await gatewayCalls(gateway.url, 's3_put_object'), before + 1);

    const validatorGet = await callToolAs('validator', 'documents_get', { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' });
    assert.equal(validatorGet.status, 404);
    assert.equal((validatorGet.body.error as unknown as { code: string }).code, 'not_found');

    const viewer = await callToolAs('viewer', 'documents_get', { document_id: '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b' });
    assert.equal(viewer.status, 403);
    assert.equal(viewer.body.error?.data?.reason, 'authz.tool_denied');
  });

  it('passes the caller identity from the token to the gateway audit line', async () => {
    const res = await callToolAs('orchestrator', 'documents_list', { limit: 1 });
    assert.equal(res.status, 200);
    const line = gatewayLines.filter((l) => l.event_type === 'mcp_tool_call' && l.tool === 'documents_list').at(-1);
    assert.deepEqual((line?.caller as { subject: string }).subject, 'service-account-orchestrator');
  });

  it('refuses a viewer (no tool grant) at initialize with 403', async () => {
    const client = new Client({ name: 'test-viewer', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { fetch: signingFetch(tokenFor('viewer'), proofKey) });
    await assert.rejects(client.connect(transport), (err: { code?: number; message?: string }) => err.code === 403 && /authz\.method_denied/.test(err.message ?? ''));
    await client.close();
  });

  it('refuses an unsigned request (token without a DPoP proof) with 401', async () => {
    const res = await fetch(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${tokenFor('admin')}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(res.status, 401);
  });

  it("serves the gateway's own metrics on the sidecar's admin /metrics (one scrape target per task)", async () => {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    assert.match(text, /^ca_a2a_requests_total\{/m, 'the sidecar metrics');
    assert.match(text, /^ca_a2a_mcp_breaker_state\{backend="postgres"\} 0$/m, 'the gateway breaker, closed');
    assert.match(text, /^# TYPE ca_a2a_mcp_tool_calls_total counter$/m);
    assert.doesNotMatch(text, /^# upstream metrics dropped/m, 'every line of the gateway\'s is one Prometheus parses');
  });

  it('keeps the shipped mcp.yaml tools list equal to the tools the gateway serves', () => {
    const file = parse(readFileSync(shippedPolicyFile('mcp'), 'utf8')) as { tools: Record<string, unknown> };
    assert.deepEqual(Object.keys(file.tools).sort(), [...TOOL_NAMES].sort());
    assert.deepEqual([...sidecar.policy().tools.keys()].sort(), [...TOOL_NAMES].sort());
  });
});
