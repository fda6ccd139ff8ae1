import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/** What /ready reports; readiness is false while starting, draining, or a gate is closed. */
export interface ReadinessSource {
  readiness(): { ready: boolean; details: Record<string, unknown> };
}

/**
 * The admin listener: /ready, /healthz, /metrics. Never the proxied port, so neither clients
 * nor agents can reach metrics through the service address.
 */
export function createAdminServer(registry: Registry, readiness: ReadinessSource): Server {
  return createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/ready') {
      const { ready, details } = readiness.readiness();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', ...details });
    } else if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/metrics') {
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(text);
    } else {
      sendJson(res, 404, { error: 'not found' });
    }
  });
}

function sendJson(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}
