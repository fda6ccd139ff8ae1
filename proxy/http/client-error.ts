import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { DENIALS, denial, type Denial } from '../denials.js';

/**
 * Requests Node's HTTP parser refuses before any handler runs (smuggling shapes, oversized
 * headers, a client too slow to send its headers). They still get a JSON-RPC error body, a
 * metric and an audit line, then the connection is closed.
 */
export function clientErrorDenial(error: { code?: string }): Denial | undefined {
  switch (error.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return undefined;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return denial('transport.timeout');
    case 'HPE_HEADER_OVERFLOW':
      return denial('transport.bad_framing', 'headers too large');
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
      return denial('transport.bad_framing', 'conflicting or invalid Content-Length');
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return denial('transport.bad_framing', 'invalid Transfer-Encoding');
    default:
      return denial('transport.bad_framing');
  }
}

export function writeRawRefusal(socket: Socket, refusal: Denial): void {
  const row = DENIALS[refusal.code];
  const message = refusal.detail ? `${row.message}: ${refusal.detail}` : row.message;
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: row.rpcCode, message, data: { reason: refusal.code } } });
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${row.status} ${STATUS_CODES[row.status] ?? 'Bad Request'}\r\n`
      + `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroySoon();
}
