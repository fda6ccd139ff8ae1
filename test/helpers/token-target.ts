import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A target that answers 401 to the tokens `refuses` says, 200 to the others, and keeps the token of every call. */
export interface Target {
  readonly url: string;
  /** The access token of each call, in order. */
  readonly tokens: string[];
  close(): void;
}

export async function startTarget(refuses: (token: string, seen: readonly string[]) => boolean): Promise<Target> {
  const tokens: string[] = [];
  const server = createServer((req, res) => {
    const token = String(req.headers.authorization).split(' ')[1] ?? '';
    const refused = refuses(token, tokens);
    tokens.push(token);
    req.resume();
    req.on('end', () => {
      const body = refused
        ? { jsonrpc: '2.0', id: 1, error: { code: -32010, message: 'unauthorized' } }
        : { jsonrpc: '2.0', id: 1, result: { ok: true } };
      res.writeHead(refused ? 401 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tokens,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

export const distinct = (tokens: readonly string[]): number => new Set(tokens).size;
