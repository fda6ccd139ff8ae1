import { connect } from 'node:net';

/** Sends raw bytes to host:port and resolves with everything read until the server closes or `waitMs` passes. */
export function rawRequest(url: string, payload: string, waitMs = 2000): Promise<{ text: string; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    let closed = false;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed });
    }, waitMs);
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
    });
    socket.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ text, closed });
    });
    socket.on('error', reject);
    socket.write(payload);
  });
}

/** Sends raw bytes to host:port and resets the connection at once (RST), as a client that goes away abruptly. */
export function sendAndReset(url: string, payload: string): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(payload);
      socket.resetAndDestroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

/** The JSON body of a raw HTTP/1.1 response. */
export function rawJson(text: string): { error?: { code: number; data?: { reason?: string } } } {
  const at = text.indexOf('\r\n\r\n');
  return JSON.parse(text.slice(at + 4)) as { error?: { code: number; data?: { reason?: string } } };
}

/** The x-ca-a2a-request-id header of a raw HTTP/1.1 response, if it has one. */
export function rawRequestId(text: string): string | undefined {
  return /^x-ca-a2a-request-id: *([^\r]*)\r$/im.exec(text.slice(0, text.indexOf('\r\n\r\n') + 2))?.[1];
}

/** Whether a TCP connection to host:port is accepted. */
export function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
