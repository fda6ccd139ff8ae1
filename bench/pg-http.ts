import { createServer } from 'node:http';
import pg from 'pg';
import { GET_DOCUMENT_SQL } from '../mcp/tools/document-rows.js';

/**
 * The floor under the MCP gateway: one node:http exchange around the same parameterised SELECT
 * (JSON body in, the row as JSON out) and nothing else — no schema, breaker, retry, metric or log.
 * `node pg-http.ts PORT DATABASE_URL`.
 */
const [port, databaseUrl] = [Number(process.argv[2]), process.argv[3] as string];
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const { arguments: args } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { arguments: { document_id: string } };
    const { rows } = await pool.query(GET_DOCUMENT_SQL, [args.document_id]);
    const body = JSON.stringify({ success: true, document: rows[0] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  } catch {
    res.writeHead(500).end();
  }
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
