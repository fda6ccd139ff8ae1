import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentStack } from './agent-stack.js';

/** A tool call as an agent posts it to the gateway's /call_tool. */
export interface ToolCall {
  readonly tool: string;
  readonly arguments: Record<string, unknown>;
}

/** A server between the agents and the real gateway, for `stack.routeGatewayTo(url)`. */
export interface GatewayStandIn {
  readonly url: string;
  close(): void;
}

/**
 * Passes every call on to the stack's real gateway, identity headers included, once `intercept`
 * has seen it (and waited, or acted on the gateway itself); `intercept` answers a call itself by
 * writing `res` and resolving true.
 */
export async function startGatewayStandIn(stack: AgentStack, intercept: (call: ToolCall, req: IncomingMessage, res: ServerResponse) => Promise<boolean> | boolean): Promise<GatewayStandIn> {
  const server = createServer((req, res) => {
    void (async () => {
      let body = '';
      for await (const chunk of req) body += (chunk as Buffer).toString();
      if (await intercept(JSON.parse(body) as ToolCall, req, res)) return;
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
      const answer = await fetch(`${stack.gateway.url}${req.url ?? '/call_tool'}`, { method: 'POST', body, headers });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}
