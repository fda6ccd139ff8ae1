import { createServer } from 'node:http';

/** The demo agent of the benchmark: answers every JSON-RPC request with a small result. */
const port = Number(process.argv[2]);
const answer = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { status: 'archived', score: 0.97 } }));
createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
    res.end(answer);
  });
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
