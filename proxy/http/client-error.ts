import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
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

/** Answers on the bare socket and closes it; `requestId`, when given, is the refusal's audit line's. */
export function writeRawRefusal(socket: Socket, refusal: Denial, requestId?: string): void {
  // Node hands a CONNECT's socket over without its error listener: a client that resets the
  // connection before this answer is written would raise an 'error' no one hears, which ends the
  // process. Nothing is left to do on a socket being closed anyway.
  socket.on('error', ignoreError);
  const row = DENIALS[refusal.code];
  const message = refusal.detail ? `${row.message}: ${refusal.detail}` : row.message;
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: row.rpcCode, message, data: { reason: refusal.code } } });
  const id = requestId === undefined ? '' : `x-ca-a2a-request-id: ${requestId}\r\n`;
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${row.status} ${STATUS_CODES[row.status] ?? 'Bad Request'}\r\n`
      + `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${id}connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroySoon();
}

function ignoreError(): void {}

/**
 * Refuses what `server`'s HTTP parser refuses, on the wire as a JSON-RPC error. A refusal with no
 * request behind it goes to `record` (count and log it) with a request id of its own, which the
 * answer carries as x-ca-a2a-request-id like every other refusal. One that cuts off a request whose body
 * its handler is still reading (a timeout or bad chunking mid-body) is left to that handler,
 * which sees the body cut off: the returned function gives it this refusal to report, once and
 * with its request's fields, instead of its own.
 */
export function refuseClientErrors(server: Server, record: (refusal: Denial, socket: Socket, requestId: string) => void): (req: IncomingMessage) => Denial | undefined {
  const cutOff = new WeakMap<IncomingMessage, Denial>();
  server.on('clientError', (error: { code?: string }, socket: Socket) => {
    const refusal = clientErrorDenial(error);
    if (!refusal) {
      socket.destroy();
      return;
    }
    const reading = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (reading && !reading.headersSent && !reading.req.complete) {
      cutOff.set(reading.req, refusal);
      writeRawRefusal(socket, refusal);
      return;
    }
    const requestId = randomUUID();
    record(refusal, socket, requestId);
    writeRawRefusal(socket, refusal, requestId);
  });
  return (req) => cutOff.get(req);
}
