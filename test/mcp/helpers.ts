import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import type { Logger } from 'pino';
import S3rver from 's3rver';
import { startMcpGateway, type McpGateway, type McpGatewayOptions } from '../../mcp/gateway.js';

export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema of its own per suite, so suites running at once never see each other's tables. */
export async function createTestSchema(baseUrl = PG_URL): Promise<{ schema: string; urlFor(hostPort?: string): string; drop(): Promise<void> }> {
  const schema = `mcp_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  return {
    schema,
    urlFor(hostPort) {
      const url = new URL(baseUrl);
      if (hostPort) url.host = hostPort;
      url.searchParams.set('options', `-c search_path=${schema}`);
      return url.toString();
    },
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}

/** A real S3-compatible server on a free port with one bucket. */
export async function startS3rver(bucket = 'documents'): Promise<{ endpoint: string; bucket: string; close(): Promise<void> }> {
  const directory = await mkdtemp(join(tmpdir(), 'ca-a2a-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: process.env.S3RVER_VERBOSE !== '1', directory, configureBuckets: [{ name: bucket }] });
  const addr = await server.run();
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    bucket,
    async close() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ca-a2a-mcp-'));
}

/** A pino logger whose JSON lines land in `lines`. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export interface ToolResponse {
  status: number;
  /** The Retry-After header, null when absent. */
  retryAfter: string | null;
  body: Record<string, unknown> & { success: boolean; error?: { code: string; message: string; backend?: string; retry_after_seconds?: number; current_status?: string } };
}

/** POST /call_tool. */
export async function callTool(baseUrl: string, tool: string, args: unknown, headers: Record<string, string> = {}): Promise<ToolResponse> {
  const res = await fetch(`${baseUrl}/call_tool`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ tool, arguments: args }),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as ToolResponse['body'] };
}

/** Reads one sample of a metric from the gateway's /metrics (0 when absent). */
export async function metricValue(baseUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z0-9_]+)(?:\{(.*)\})? (.+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Tracks both ends of a relayed connection in `open`; either closing closes the other. */
export function tieTogether(open: Set<Socket>, client: Socket, upstream: Socket): void {
  for (const s of [client, upstream]) {
    open.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      open.delete(s);
      client.destroy();
      upstream.destroy();
    });
  }
}

/**
 * A TCP relay in front of PostgreSQL that the test can cut (refusing new and killing open
 * connections) and restore on the same port; it also counts connections. `freeze` makes the open
 * connections go silent instead (a NAT that forgot them, a failover): nothing is forwarded any more
 * and nothing is closed, while new connections are relayed as before.
 */
export class TcpRelay {
  port = 0;
  accepted = 0;
  maxOpen = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly pairs = new Set<[Socket, Socket]>();
  private openClients = 0;
  private muteNextConnection = false;
  private readonly targetPort: number;

  constructor(targetPort: number) {
    this.targetPort = targetPort;
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      this.accepted++;
      this.maxOpen = Math.max(this.maxOpen, ++this.openClients);
      client.once('close', () => this.openClients--);
      const upstream = connect(this.targetPort, '127.0.0.1');
      tieTogether(this.sockets, client, upstream);
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.once('close', () => this.pairs.delete(pair));
      if (this.muteNextConnection) {
        this.muteNextConnection = false;
        // The client's first packet (PostgreSQL's startup message) goes through, nothing after it.
        client.once('data', (first: Buffer) => {
          upstream.write(first);
          client.pause();
        });
        upstream.pipe(client);
        return;
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((ok) => server.listen(this.port, '127.0.0.1', () => ok()));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops forwarding on every open connection without closing it (no FIN, no RST either way). */
  freeze(): void {
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    this.pairs.clear();
  }

  /**
   * The next connection goes silent once opened: its first packet is forwarded (a trusted
   * PostgreSQL login then succeeds) and nothing the client sends after it; answers still come back.
   */
  muteNext(): void {
    this.muteNextConnection = true;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((ok) => server.close(() => ok()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/**
 * A real gateway on its own PostgreSQL schema and a temporary local-disk bucket, with its log
 * lines captured and `options` (pool, breaker…) applied. `close()` stops it and removes both.
 */
export async function startTestGateway(
  options: Pick<McpGatewayOptions, 'pool' | 'breaker' | 'perCaller'> = {},
): Promise<{ gateway: McpGateway; databaseUrl: string; lines: Record<string, unknown>[]; close(): Promise<void> }> {
  const schema = await createTestSchema();
  const dataDir = await tempDir();
  const captured = captureLogger();
  const gateway = await startMcpGateway({ ...options, port: 0, dataDir, databaseUrl: schema.urlFor(), logger: captured.logger });
  return {
    gateway,
    databaseUrl: schema.urlFor(),
    lines: captured.lines,
    async close() {
      await gateway.close();
      await schema.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The schema, data directory and (for `s3`) s3rver a gateway test runs on, each with its clean-up
 * pushed to `cleanups`; returns the gateway options to start one with.
 */
export async function backendOptions(backend: { s3: boolean }, cleanups: (() => Promise<void>)[]): Promise<{ dataDir: string; databaseUrl: string; s3: Record<string, string> }> {
  const schema = await createTestSchema();
  cleanups.push(() => schema.drop());
  const dataDir = await tempDir();
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  if (!backend.s3) return { dataDir, databaseUrl: schema.urlFor(), s3: {} };
  const server = await startS3rver();
  cleanups.push(() => server.close());
  return { dataDir, databaseUrl: schema.urlFor(), s3: { endpoint: server.endpoint, bucket: server.bucket, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } };
}

/** Resolves once a session tagged `applicationName` waits for a lock (as pg_stat_activity shows it). */
export async function waitingOnLock(observer: pg.Client, applicationName: string): Promise<void> {
  for (;;) {
    const { rows } = await observer.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [applicationName]);
    if (rows.length > 0) return;
    await nextTurn();
  }
}
