import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { createTestSchema, TcpRelay } from '../../mcp/helpers.js';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { dropKeysWithPrefix } from '../../../proxy/stores/redis.js';
import { RevocationSet } from '../../../proxy/stores/revocation-set.js';
import { RevocationSync } from '../../../proxy/stores/revocation-sync.js';
import type { SidecarStoreOptions } from '../../../proxy/stores/sidecar-stores.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export { createTestSchema, TcpRelay };

/** A key prefix of its own per suite run, so suites sharing the one Redis never meet. */
export function uniquePrefix(): string {
  return `ca-a2a-test-${randomBytes(5).toString('hex')}`;
}

/** Deletes every key of a prefix (after()). */
export function dropPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  return dropKeysWithPrefix(url, prefix);
}

/** Store options for a sidecar on the real Redis and a suite's own PostgreSQL schema. */
export function sharedStores(prefix: string, databaseUrl: string, extra: Partial<SidecarStoreOptions> = {}): SidecarStoreOptions {
  return { redisUrl: REDIS_URL, databaseUrl, keyPrefix: prefix, ...extra };
}

/** POSTs a JSON body from a chosen local address (127.0.0.x), so the sidecar sees that peer. */
export function postFrom(url: string, localAddress: string, token: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/message`, {
      method: 'POST',
      localAddress,
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), authorization: `Bearer ${token}`, ...headers },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** Polls until `check` is true; resolves to the elapsed milliseconds (rejects after `timeoutMs`). */
export async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if (await check()) return performance.now() - started;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

/**
 * A sidecar's revocation view on an embedded data directory of its own, as a running process has
 * it: the backend, a set fed by a sync whose periodic resync is a minute away (so only the journal
 * watch can explain a prompt update). `run` gets the directory and the set; all is closed after.
 */
export async function withEmbeddedSidecarView(run: (dataDir: string, set: RevocationSet) => Promise<void>): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ca-a2a-embedded-'));
  const running = await openRevocationBackend({ dataDir }, () => undefined);
  const set = new RevocationSet({ loaded: false });
  const sync = new RevocationSync({ set, store: running.store, bus: running.bus, cleanupIntervalMs: 0, resyncIntervalMs: 60_000 });
  try {
    await sync.start();
    await run(dataDir, set);
  } finally {
    await sync.close();
    await running.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
