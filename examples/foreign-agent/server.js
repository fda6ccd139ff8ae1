// A foreign agent: plain node:http, no ca-a2a code and no security code. The ca-a2a sidecar in
// front of it has already authenticated, authorized and validated every request it receives,
// and it listens on 127.0.0.1 so that nothing but the sidecar can reach it.
//   LISTEN=127.0.0.1:9000 node examples/foreign-agent/server.js
import { createServer } from 'node:http';

const [host = '127.0.0.1', port = '9000'] = (process.env.LISTEN ?? '127.0.0.1:9000').split(':');

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') return send(res, 200, { status: 'ok' });
  if (req.method !== 'POST' || req.url !== '/message') return send(res, 404, { error: 'not found' });
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    // Only a well-formed JSON-RPC call to a method the policy names gets this far.
    const call = JSON.parse(body);
    // Identity headers are set by the sidecar; any the client sent were dropped before.
    const caller = {
      subject: req.headers['x-ca-a2a-subject'],
      client_id: req.headers['x-ca-a2a-client-id'],
      roles: String(req.headers['x-ca-a2a-roles'] ?? '').split(',').filter(Boolean),
      request_id: req.headers['x-ca-a2a-request-id'],
    };
    if (call.method === 'echo') return send(res, 200, { jsonrpc: '2.0', id: call.id, result: { message: call.params.message, caller } });
    return send(res, 200, { jsonrpc: '2.0', id: call.id, error: { code: -32601, message: 'method not found' } });
  });
});

server.listen(Number(port), host, () => {
  console.log(`foreign agent listening on http://${host}:${server.address().port}`);
});
process.on('SIGTERM', () => server.close());
