import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { request } from 'undici';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import { startMcpGateway, type McpGateway } from '../../../mcp/gateway.js';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { startSidecar, type Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { rpc } from '../../helpers/harness.js';
import { createTestSchema } from '../../mcp/helpers.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { startEgressSidecar } from './helpers.js';

describe('egress: an agent speaks MCP Streamable HTTP to the gateway through its sidecar', () => {
  let issuer: DevIssuer;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let gateway: McpGateway;
  let mcp: Sidecar;
  let orchestrator: Sidecar;

  before(async () => {
    const dataDir = tempDirSync('egress-mcp');
    issuer = await startIssuer({ port: 0, dataDir });
    const secrets = await loadClientSecrets(dataDir);
    schema = await createTestSchema();
    const quiet = pino({ level: 'warn' }, new Writable({ write: (_chunk, _enc, done) => done() }));
    gateway = await startMcpGateway({ port: 0, dataDir: tempDirSync('egress-mcp-gateway'), databaseUrl: schema.urlFor(), logger: quiet });
    mcp = await startSidecar({ issuer: issuer.issuer, watchPolicy: false, logDestination: new AuditCapture(), policyFile: shippedPolicyFile('mcp'), upstream: gateway.url });
    orchestrator = await startEgressSidecar({ issuer: issuer.issuer, clientSecret: secrets.orchestrator, serviceUrls: { mcp: mcp.url } });
  });
  after(async () => {
    await orchestrator.close();
    await mcp.close();
    await gateway.close();
    await schema.drop();
    await issuer.close();
  });

  const post = async (body: unknown) => {
    const res = await request(`${orchestrator.egressUrl}/mcp/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, json: (await res.body.json()) as { result?: Record<string, unknown>; error?: { message?: string } } };
  };

  it('initializes, lists the tools and calls a granted one: the agent\'s Accept reaches the gateway', async () => {
    const init = await post(rpc('initialize', { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'agent', version: '1' } }));
    assert.equal(init.status, 200, JSON.stringify(init.json));
    assert.equal((init.json.result?.['serverInfo'] as { name?: string } | undefined)?.name, 'ca-a2a-mcp-gateway');
    const list = await post(rpc('tools/list', {}, 2));
    assert.equal(list.status, 200, JSON.stringify(list.json));
    assert.ok((list.json.result?.['tools'] as { name: string }[]).some((tool) => tool.name === 'documents_list'));
    const call = await post(rpc('tools/call', { name: 'documents_list', arguments: {} }, 3));
    assert.equal(call.status, 200, JSON.stringify(call.json));
    assert.equal(call.json.result?.['isError'], undefined, JSON.stringify(call.json));
  });
});
