import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createLogger, type Logger } from '../proxy/observe/logger.js';
import { migrate } from '../proxy/stores/sql/migrate.js';
import { openSqlClient } from '../proxy/stores/sql/sql-client.js';
import type { SqlPoolOptions } from '../proxy/stores/sql/sql-client.js';
import { limitPerCaller } from './caller-limit.js';
import { createDiskStore } from './backends/disk-store.js';
import type { ObjectStore } from './backends/object-store.js';
import { createS3Store } from './backends/s3-store.js';
import type { S3StoreOptions } from './backends/s3-store.js';
import { route } from './http-routes.js';
import { createGatewayMetrics } from './metrics.js';
import { DEFAULT_KEY_POLICY, keyPolicy } from './object-keys.js';
import { createResilientBackend, errorCode } from './resilience.js';
import type { BreakerOptions } from './resilience.js';
import { createToolRunner } from './tool-runner.js';
import { isPgTransient } from './tools/sql-run.js';
import { ALL_TOOLS } from './tools/tool-definitions.js';
import { projectPath } from '../proxy/paths.js';

/** Bucket selection and object rules; without `bucket` the gateway uses a directory in the data dir. */
export interface GatewayS3Options extends Partial<S3StoreOptions> {
  /** Key prefixes the S3 tools may touch, each ending with `/`. Default `uploads/`, `archive/`. */
  allowedPrefixes?: string[];
  /** Largest object put or get. Default 10 MiB. */
  maxObjectBytes?: number;
  /** Longest key in UTF-8 bytes. Default 1024. */
  maxKeyLength?: number;
  /**
   * Timeout of each try of an upload (s3_put_object), in place of `breaker.timeoutMs`: an
   * upload's time grows with its size and the link. Default 30 000 ms.
   */
  uploadTimeoutMs?: number;
}

/** Options of {@link startMcpGateway}; every field has an embedded default. */
export interface McpGatewayOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 9000; 0 picks a free port. */
  port?: number;
  /** Holds the PGlite database and the local bucket. Default ./.ca-a2a. */
  dataDir?: string;
  /** PostgreSQL URL; unset selects PGlite in the data dir. */
  databaseUrl?: string;
  pool?: SqlPoolOptions;
  s3?: GatewayS3Options;
  /** Applied to each backend separately (one breaker for postgres, one for s3). */
  breaker?: BreakerOptions;
  /** Each caller's bound on the database, by the client id the sidecar verified (see {@link PerCallerOptions}). */
  perCaller?: PerCallerOptions;
  /**
   * Where its lines go. Default: stdout through the sidecar's bounded, buffered logger, each line
   * dropped past the bound counted in `ca_a2a_mcp_log_lines_dropped_total`; a logger given here
   * is the caller's to bound.
   */
  logger?: Logger;
}

/** How many database calls one caller may run at once, how much of the pool is kept for the others, and how long one over that waits. */
export interface PerCallerOptions {
  /** Default half the pool (`pool.max`, 10 → 5), at least 1; 1 on PGlite, which runs one statement at a time. */
  maxStatements?: number;
  /** Default the pool's connection timeout (`pool.connectionTimeoutMs`, 5 000 ms). */
  maxWaitMs?: number;
  /**
   * Pooled connections a caller's second and later calls may not take, kept for callers with
   * nothing in flight; 0 to less than `pool.max`. Default a fifth of the pool (10 → 2), at least 1;
   * unused on PGlite.
   */
  reservedConnections?: number;
}

/** A running gateway. */
export interface McpGateway {
  /** Base URL, e.g. http://127.0.0.1:9000 (routes are /mcp, /call_tool, /health, /metrics). */
  readonly url: string;
  readonly port: number;
  /** The logger it writes to (the one given, or its own on stdout), for its command's lines. */
  readonly logger: Logger;
  /** Stops accepting, lets in-flight calls finish (bounded), closes sockets, pool and bucket client, then flushes its log. */
  close(): Promise<void>;
}

const DEFAULT_MAX_OBJECT = 10 * 1024 * 1024;
const DEFAULT_UPLOAD_TIMEOUT_MS = 30_000;
const DEFAULT_POOL_MAX = 10;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const MIGRATIONS_DIR = projectPath('mcp/migrations/');
const DRAIN_MS = 10_000;

/**
 * The largest object cap taken (`s3.maxObjectBytes`, CA_A2A_S3_MAX_OBJECT_BYTES): 256 MiB, the
 * largest power of two whose upload body ({@link bodyLimit}, 341 MiB) is still below V8's longest
 * string (2^29 - 24 characters, 512 MiB), which the body is parsed as. Past that no upload near
 * the cap could be parsed; well before it, the memory an upload holds while it is parsed is the
 * bound: about four times the object (the body, its text, the base64 text parsed from it).
 */
export const MAX_OBJECT_BYTES_LIMIT = 256 * 1024 * 1024;

/**
 * The request body cap for an object cap: an upload's body carries the object as base64 (4/3 of
 * it) and a small envelope (key, content type) within the 64 KiB of slack. The base64 text is
 * counted as sent, unescaped: docs/mcp.md (S3) says why a client escaping its `/` is not made room for.
 */
export function bodyLimit(maxObjectBytes: number): number {
  return Math.ceil(maxObjectBytes / 3) * 4 + 64 * 1024;
}

/** Starts the MCP resource gateway: migrations, backends, tools, then the HTTP listener. */
export async function startMcpGateway(opts: McpGatewayOptions = {}): Promise<McpGateway> {
  // Made first so that its counter can count the lines dropped from the start; the pool's stats are read at scrape time only.
  const metrics = createGatewayMetrics(() => sql.stats());
  const logger = opts.logger ?? createLogger({ service: 'mcp-gateway', onDrop: () => metrics.logLinesDropped.inc() });
  const keys = keyPolicy(
    opts.s3?.allowedPrefixes ?? DEFAULT_KEY_POLICY.allowedPrefixes,
    opts.s3?.maxKeyLength ?? DEFAULT_KEY_POLICY.maxKeyLength,
  );
  const dataDir = resolve(opts.dataDir ?? '.ca-a2a');
  const poolMax = opts.pool?.max ?? DEFAULT_POOL_MAX;
  for (const [name, value] of Object.entries(opts.perCaller ?? {})) {
    // A bound of 0 would refuse every call; refused here rather than at the first call.
    const [least, what] = name === 'reservedConnections' ? [0, 'a non-negative'] : [1, 'a positive'];
    if (value !== undefined && !(Number.isInteger(value) && value >= least)) throw new Error(`perCaller.${name} must be ${what} integer`);
  }
  const reserved = opts.perCaller?.reservedConnections;
  // Reserving the whole pool would hold every caller to one call: that is maxStatements 1.
  if (reserved !== undefined && reserved >= poolMax) throw new Error(`perCaller.reservedConnections (--db-reserved) must be less than the pool's ${poolMax} connections`);
  const maxObjectBytes = opts.s3?.maxObjectBytes ?? DEFAULT_MAX_OBJECT;
  if (!(Number.isInteger(maxObjectBytes) && maxObjectBytes >= 1 && maxObjectBytes <= MAX_OBJECT_BYTES_LIMIT)) {
    throw new Error(`s3.maxObjectBytes (CA_A2A_S3_MAX_OBJECT_BYTES) must be an integer from 1 to ${MAX_OBJECT_BYTES_LIMIT}`);
  }
  const sql = await openSqlClient({
    databaseUrl: opts.databaseUrl,
    dataDir: join(dataDir, 'pglite'),
    pool: { applicationName: 'ca-a2a-mcp-gateway', ...opts.pool, max: poolMax },
    onIdleError: (err) => logger.warn({ event_type: 'mcp_pool_error', err_message: err.message }, 'idle connection lost'),
    onCancelError: (err) =>
      logger.warn({ event_type: 'mcp_sql_cancel_failed', err_code: errorCode(err), err_message: err.message }, 'timed-out statement not cancelled'),
  });
  let store: ObjectStore | undefined;
  try {
    await migrate(sql, { set: 'mcp', dir: MIGRATIONS_DIR });
    const s3 = opts.s3 ?? {};
    store = s3.bucket
      ? createS3Store({ ...s3, bucket: s3.bucket })
      : await createDiskStore(join(dataDir, 'bucket'), { logger, onUnreadable: (operation) => metrics.bucketUnreadable.inc({ operation }) });
  } catch (err) {
    await sql.close();
    throw err;
  }
  const s3opts = opts.s3 ?? {};
  const db = createResilientBackend('postgres', isPgTransient, opts.breaker ?? {}, metrics, logger);
  const s3 = createResilientBackend('s3', store.isTransient, opts.breaker ?? {}, metrics, logger);
  // Half the pool per caller: one caller flooding long statements leaves the other half to everyone
  // else; a fifth kept for callers with nothing in flight, so two or more flooding do not take it all.
  const pglite = sql.kind === 'pglite';
  const dbLimit = limitPerCaller(
    db,
    {
      maxConcurrent: opts.perCaller?.maxStatements ?? (pglite ? 1 : Math.max(1, Math.floor(poolMax / 2))),
      maxWaitMs: opts.perCaller?.maxWaitMs ?? opts.pool?.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      // PGlite runs one statement at a time and queues the rest itself: no pool to share, only
      // each caller's bound.
      poolSize: pglite ? Number.MAX_SAFE_INTEGER : poolMax,
      reserved: pglite ? 0 : (reserved ?? Math.max(1, Math.floor(poolMax / 5))),
    },
    metrics,
    logger,
  );
  const deps = { sql, db, store, s3, keys, maxObjectBytes, uploadTimeoutMs: s3opts.uploadTimeoutMs ?? DEFAULT_UPLOAD_TIMEOUT_MS };
  const runner = createToolRunner(ALL_TOOLS, (caller) => ({ ...deps, db: dbLimit.forCaller(caller) }), metrics, logger);
  const backends = () => ({
    postgres: { kind: sql.kind, breaker: db.state() },
    s3: { kind: store.kind, breaker: s3.state() },
  });
  const maxBodyBytes = bodyLimit(maxObjectBytes);
  // Present at 0 from the start: the ways a client can leave.
  for (const [transport, stage] of [['mcp', 'request'], ['mcp', 'answer'], ['rest', 'request'], ['rest', 'answer']]) metrics.clientClosed.inc({ transport, stage }, 0);

  let closing: Promise<void> | undefined;
  // Set once the drain is over and the gateway closes the connections still open itself.
  let cutting = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const server = createServer((req, res) => {
    inFlight++;
    res.on('close', () => {
      if (--inFlight === 0) drained?.();
    });
    void route(req, res, { runner, registry: metrics.registry, logger, maxBodyBytes, clientClosed: metrics.clientClosed, cutting: () => cutting, backends });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 120_000;

  const host = opts.host ?? '127.0.0.1';
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(opts.port ?? 9000, host, () => ok());
    });
  } catch (err) {
    // Nothing serves: release the pool and the bucket client, whose connections would keep the process alive.
    db.dispose();
    s3.dispose();
    await Promise.allSettled([sql.close(), store.close()]);
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ event_type: 'mcp_gateway_started', url, database: sql.kind, bucket: store.kind }, 'mcp gateway listening');

  return {
    url,
    port,
    logger,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((ok) => server.close(() => ok()));
        server.closeIdleConnections();
        if (inFlight > 0) {
          await Promise.race([
            new Promise<void>((ok) => (drained = ok)),
            new Promise<void>((ok) => setTimeout(ok, DRAIN_MS).unref()),
          ]);
        }
        cutting = true;
        server.closeAllConnections();
        await stopped;
        // Calls still waiting for a slot would otherwise run on the closed pool, or wait out their time.
        dbLimit.close();
        db.dispose();
        s3.dispose();
        await Promise.allSettled([sql.close(), store.close()]);
        logger.info({ event_type: 'mcp_gateway_stopped' }, 'mcp gateway stopped');
        await new Promise<void>((ok) => logger.flush(() => ok()));
      })();
      return closing;
    },
  };
}
