import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';

/** The cost of a Node proxy and nothing else: node:http in, undici out, no checks. */
const [port, upstream] = [Number(process.argv[2]), process.argv[3] as string];
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 30_000 });
createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const response = await pool.request({ method: 'POST', path: req.url ?? '/', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
    res.writeHead(response.statusCode, { 'content-type': 'application/json' });
    await pipeline(response.body, res);
  } catch {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  }
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
