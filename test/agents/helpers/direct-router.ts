import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for one agent's sidecar egress, for tests that run agents without sidecars. It serves
 * the egress wire contract (`POST /mcp/call_tool`, `POST /SERVICE/message`) and forwards to the real
 * gateway and agents, adding the x-ca-a2a-* identity headers a sidecar would. No policy is applied:
 * the agents' behaviour is under test here, the sidecars' in test/e2e.
 */
export interface DirectRouter {
  readonly url: string;
  close(): Promise<void>;
}

/** Where the router forwards; read per request, so agents may start after their routers. */
export interface RouterTargets {
  gatewayUrl(): string;
  agentUrl(service: string): string | undefined;
}

function rpcError(res: ServerResponse, status: number, reason: string, message: string): void {
  const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32050, message, data: { reason } } });
  res.writeHead(status, { 'content-type': 'application/json' }).end(body);
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Starts a router that speaks for `identity` (client id and role of the same name). */
export async function startDirectRouter(identity: string, targets: RouterTargets): Promise<DirectRouter> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const match = /^\/([a-z0-9-]+)\/(message|call_tool)$/.exec(path);
      if (req.method !== 'POST' || !match) return rpcError(res, 404, 'egress.unknown_route', 'no such egress route');
      const [, service, endpoint] = match;
      const target = service === 'mcp' && endpoint === 'call_tool' ? `${targets.gatewayUrl()}/call_tool`
        : endpoint === 'message' && service !== undefined && targets.agentUrl(service) !== undefined ? `${targets.agentUrl(service)}/message` : undefined;
      // The same refusal a sidecar gives when its upstream is down.
      if (target === undefined) return rpcError(res, 502, 'upstream.unavailable', 'upstream unavailable');
      const body = await readAll(req);
      let answer: Response;
      try {
        answer = await fetch(target, {
          method: 'POST',
          body,
          headers: {
            'content-type': req.headers['content-type'] ?? 'application/json',
            'x-ca-a2a-subject': `service-account-${identity}`,
            'x-ca-a2a-client-id': identity,
            'x-ca-a2a-roles': identity,
            'x-ca-a2a-request-id': randomUUID(),
          },
        });
      } catch {
        return rpcError(res, 502, 'upstream.unavailable', 'upstream unavailable');
      }
      const text = Buffer.from(await answer.arrayBuffer());
      // Retry-After passes, as a sidecar passes it: the agents' clients honour it.
      const retryAfter = answer.headers.get('retry-after');
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/json', ...(retryAfter === null ? {} : { 'retry-after': retryAfter }),
      }).end(text);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
