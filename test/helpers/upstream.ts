import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** The fields as they came, in order: name, value, name, value… */
  readonly rawHeaders: readonly string[];
  readonly body: string;
}

/** What the upstream answers; sent after `delayMs`, or once `after` settles. */
export interface UpstreamAnswer {
  readonly status?: number;
  readonly body: unknown;
  /** Further response headers. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly delayMs?: number;
  readonly after?: Promise<unknown>;
}

/** A real HTTP agent stand-in that records what reached it and answers a JSON-RPC result. */
export interface RecordingUpstream {
  readonly url: string;
  /** What the sidecar forwarded (its own fetches of the agent's metrics are not among them). */
  readonly requests: RecordedRequest[];
  /** The sidecar's own fetches of GET /metrics (a shipped agent policy's upstream_metrics_path), answered empty. */
  readonly metricsFetches: () => number;
  /** The TCP connections the upstream has accepted. */
  readonly connections: () => number;
  /** Replace the answer (e.g. to be slow, to wait for `after`, or to return a tools/list). */
  respond(handler: ((request: RecordedRequest) => UpstreamAnswer) | undefined): void;
  close(): Promise<void>;
}

export async function startUpstream(): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  let metricsFetches = 0;
  let handler: ((request: RecordedRequest) => UpstreamAnswer) | undefined;
  const server: Server = createServer((req, res) => {
    // A forwarded request always carries the sidecar's x-ca-a2a-request-id; an admin /metrics
    // scrape's fetch of the agent's own metrics carries none, and is no client's traffic.
    if (req.method === 'GET' && req.url === '/metrics' && req.headers['x-ca-a2a-request-id'] === undefined) {
      metricsFetches++;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end('');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(recorded);
      const answer: UpstreamAnswer = handler?.(recorded) ?? { body: { jsonrpc: '2.0', id: idOf(recorded.body), result: { ok: true } } };
      const send = (): void => {
        if (res.destroyed) return;
        const text = JSON.stringify(answer.body);
        res.writeHead(answer.status ?? 200, { ...answer.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      };
      if (answer.after) void answer.after.then(send, send);
      else if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    metricsFetches: () => metricsFetches,
    connections: () => connections,
    respond: (next) => {
      handler = next;
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function idOf(body: string): unknown {
  try {
    return (JSON.parse(body) as { id?: unknown }).id ?? null;
  } catch {
    return null;
  }
}
