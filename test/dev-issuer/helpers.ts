import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** A fresh private temp directory; `remove()` deletes it. */
export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `ca-a2a-${prefix}-`));
  return { path: dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Counts requests that reach the token endpoint of the issuer on `port`, observed through Node's
 * `http.server.request.start` diagnostics channel: the real server, no wrapper in between.
 */
export function countTokenRequests(port: number): { readonly count: number; stop(): void } {
  let count = 0;
  const onStart = (message: unknown): void => {
    const { request, server } = message as { request: IncomingMessage; server: Server };
    const address = server.address() as AddressInfo | null;
    if (address?.port === port && request.url?.endsWith('/protocol/openid-connect/token') === true) count += 1;
  };
  diagnosticsChannel.subscribe('http.server.request.start', onStart);
  return {
    get count() {
      return count;
    },
    stop: () => diagnosticsChannel.unsubscribe('http.server.request.start', onStart),
  };
}

/** Posts a client_credentials request as a plain HTTP client would, to observe the wire. */
export async function rawTokenRequest(
  tokenEndpoint: string,
  clientId: string,
  secret: string,
  method: 'basic' | 'post',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (method === 'basic') {
    // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
    const credentials = `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`;
    headers['authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
  } else {
    form.set('client_id', clientId);
    form.set('client_secret', secret);
  }
  const response = await fetch(tokenEndpoint, { method: 'POST', headers, body: form });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Resolves after `ms`; used to wait for a token's refresh time, never to assert on durations. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
