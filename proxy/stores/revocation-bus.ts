import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Revocation } from './revocation-set.js';

/** What a subscriber hears: a new revocation, or "you may have missed some: reload". */
export interface RevocationListener {
  onRevocation(revocation: Revocation): void;
  onResync(): void;
}

/**
 * Pushes durable revocations to every running sidecar. Failure policy: `publish` throws when the
 * push could not be sent; the revocation is durable already, so callers log it and peers catch
 * up from the durable store on their next resync.
 */
export interface RevocationBus {
  publish(revocation: Revocation): Promise<void>;
  subscribe(listener: RevocationListener): () => void;
  close(): Promise<void>;
}

/**
 * Same-process push for the embedded mode: sidecars, admin API and CLI sharing one process (as
 * `ca-a2a up` runs them) and one data directory. Other processes are not reached: embedded mode
 * is single-process by design (PGlite admits one process per data directory).
 */
export class LocalRevocationBus implements RevocationBus {
  readonly #emitter = new EventEmitter();

  constructor() {
    this.#emitter.setMaxListeners(0);
  }

  async publish(revocation: Revocation): Promise<void> {
    this.#emitter.emit('revocation', revocation);
  }

  subscribe(listener: RevocationListener): () => void {
    const handler = (revocation: Revocation): void => listener.onRevocation(revocation);
    this.#emitter.on('revocation', handler);
    return () => this.#emitter.off('revocation', handler);
  }

  async close(): Promise<void> {
    this.#emitter.removeAllListeners();
  }
}

/**
 * Redis pub/sub on one channel per key prefix, plus a cache entry per revocation
 * (`PREFIX:revoked:KIND:ID`, expiring with it) for tools that look one up without PostgreSQL.
 * Pub/sub delivers at most once: every (re)subscription triggers `onResync`, so a sidecar that
 * lost its connection reloads from PostgreSQL instead of trusting it heard everything.
 */
export class RedisRevocationBus implements RevocationBus {
  readonly #client: Redis;
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #prefix: string;
  readonly #listeners = new Set<RevocationListener>();

  constructor(client: Redis, prefix: string, onError: (error: Error) => void) {
    this.#client = client;
    this.#prefix = prefix;
    this.#channel = `${prefix}:revocations`;
    // A subscriber connection is dedicated to SUBSCRIBE; its offline queue lets SUBSCRIBE wait
    // for the first connection, and ioredis re-subscribes by itself after a reconnect.
    this.#subscriber = client.duplicate({ enableOfflineQueue: true, connectionName: 'ca-a2a-revocations' });
    this.#subscriber.on('error', onError);
    this.#subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      const revocation = parseRevocation(message);
      if (revocation) for (const listener of this.#listeners) listener.onRevocation(revocation);
    });
    this.#subscriber.on('ready', () => {
      for (const listener of this.#listeners) listener.onResync();
    });
    this.#subscriber.subscribe(this.#channel).catch(onError);
  }

  async publish(revocation: Revocation): Promise<void> {
    const ttl = Math.max(1, Math.ceil(revocation.expiresAt - Date.now() / 1000));
    const id = revocation.kind === 'jti' ? revocation.jti : revocation.kind === 'subject' ? revocation.subject : 'all';
    const message = JSON.stringify(revocation);
    const results = await this.#client.multi()
      .set(`${this.#prefix}:revoked:${revocation.kind}:${id}`, message, 'EX', ttl)
      .publish(this.#channel, message)
      .exec();
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed) throw failed?.[0] ?? new Error('Redis transaction aborted');
  }

  subscribe(listener: RevocationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    this.#subscriber.disconnect();
  }
}

/** Reads a pushed message; anything malformed is dropped (the next resync repairs it). */
export function parseRevocation(message: string): Revocation | undefined {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.expiresAt !== 'number') return undefined;
  if (v.kind === 'jti' && typeof v.jti === 'string') return { kind: 'jti', jti: v.jti, expiresAt: v.expiresAt };
  if (typeof v.revokedAt !== 'number') return undefined;
  if (v.kind === 'subject' && typeof v.subject === 'string') return { kind: 'subject', subject: v.subject, revokedAt: v.revokedAt, expiresAt: v.expiresAt };
  if (v.kind === 'before') return { kind: 'before', revokedAt: v.revokedAt, expiresAt: v.expiresAt };
  return undefined;
}
