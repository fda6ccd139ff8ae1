/**
 * Measures what s3_put_object uploads in flight hold: K puts of one object each are sent to a
 * gateway whose bucket endpoint takes their bytes and answers none until every body has arrived;
 * then, after a full GC, heap and external memory are read against the idle gateway's. Run:
 * node --expose-gc --import tsx test/mcp/put-memory-measure.ts [K] [MiB] [rest|mcp]
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMcpGateway } from '../../mcp/gateway.js';
import { captureLogger, createTestSchema, tempDir } from './helpers.js';

const K = Number(process.argv[2] ?? 8);
const MIB = Number(process.argv[3] ?? 10);
const MCP = process.argv[4] === 'mcp';
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function usage(): { heap: number; external: number; rss: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external, rss: m.rss };
}

const held: (() => void)[] = [];
let arrived = 0;
const bucket = createServer((req, res) => {
  let bytes = 0;
  req.on('data', (c: Buffer) => (bytes += c.length));
  req.on('end', () => {
    if (bytes > 0) arrived++;
    const answer = () => res.writeHead(200, { etag: '"e"' }).end();
    if (req.method === 'PUT') held.push(answer);
    else answer();
  });
});
await new Promise<void>((ok) => bucket.listen(0, '127.0.0.1', () => ok()));
const schema = await createTestSchema();
const gateway = await startMcpGateway({
  port: 0,
  dataDir: await tempDir(),
  databaseUrl: schema.urlFor(),
  logger: captureLogger().logger,
  s3: { bucket: 'b', endpoint: `http://127.0.0.1:${(bucket.address() as AddressInfo).port}`, accessKeyId: 'k', secretAccessKey: 's', maxObjectBytes: MIB * 1024 * 1024 + 1 },
  breaker: { timeoutMs: 600_000 },
});
// One Buffer sent K times: the client side holds no copy per request (fetch would).
const args = { key: 'uploads/x.bin', content_type: 'application/octet-stream', content_base64: Buffer.alloc(MIB * 1024 * 1024, 7).toString('base64') };
const body = Buffer.from(
  JSON.stringify(MCP ? { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 's3_put_object', arguments: args } } : { tool: 's3_put_object', arguments: args }),
);
const headers = { 'content-type': 'application/json', 'content-length': body.length, accept: 'application/json, text/event-stream' };
const post = () =>
  new Promise<number>((ok, fail) => {
    const req = request(`${gateway.url}${MCP ? '/mcp' : '/call_tool'}`, { method: 'POST', headers }, (res) => {
      res.resume();
      res.on('end', () => ok(res.statusCode ?? 0));
    });
    req.on('error', fail);
    req.end(body);
  });
const before = usage();
const puts = Array.from({ length: K }, post);
while (arrived < K) await sleep(10);
const during = usage();
const mb = (n: number) => (n / 1e6).toFixed(1);
console.log(
  `${MCP ? '/mcp' : '/call_tool'}: ${K} puts of ${MIB} MiB held at the bucket: heap +${mb(during.heap - before.heap)} MB (${mb((during.heap - before.heap) / K)} per put), ` +
    `external +${mb(during.external - before.external)} MB (${mb((during.external - before.external) / K)} per put), rss +${mb(during.rss - before.rss)} MB`,
);
for (const answer of held) answer();
console.log('statuses', (await Promise.all(puts)).join(','));
await gateway.close();
await schema.drop();
bucket.close();
