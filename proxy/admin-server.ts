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
export function createAdminServer(registry: Registry, readiness: ReadinessSource, upstreamMetricsUrl: () => string | undefined = () => undefined): Server {
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
      const own = await registry.metrics();
      const url = upstreamMetricsUrl();
      const upstream = url === undefined ? '' : await fetchUpstreamMetrics(url);
      res.writeHead(200, { 'content-type': registry.contentType }).end(own + upstream);
    } else {
      sendJson(res, 404, { error: 'not found' });
    }
  });
}

function sendJson(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}

/**
 * The upstream's own metrics (e.g. the MCP gateway's breaker and pool), appended to ours so one
 * scrape of the admin listener covers the task: the upstream listens on 127.0.0.1 only. A failed
 * fetch never fails the scrape; it leaves a comment and the sidecar's own metrics.
 */
async function fetchUpstreamMetrics(url: string): Promise<string> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    if (!response.ok) return `# upstream metrics unavailable: HTTP ${response.status}\n`;
    const text = await response.text();
    return text.endsWith('\n') ? text : `${text}\n`;
  } catch {
    return '# upstream metrics unavailable\n';
  }
}
