import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Serves a request asking to upgrade its connection (`Upgrade: h2c`, as curl --http2 asks on
 * http://; `websocket`) as HTTP/1.1 (RFC 9110 §7.8) on a connection closed after its answer; true
 * when it asked. Node's parser stops at the end of such a request and drops, unseen, what came
 * behind it in the same read, even with no 'upgrade' listener: a client that pipelined a request
 * behind it would wait for that answer until the keep-alive timeout. Closed, the connection tells
 * it to send the rest again on another. Every listener's handler calls this before answering.
 */
export function closeAfterUpgradeRequest(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.headers.upgrade === undefined) return false;
  res.shouldKeepAlive = false;
  return true;
}
