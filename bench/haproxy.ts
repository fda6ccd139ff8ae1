import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * The reference of issue 3's latency target: HAProxy 2.6 with `jwt_verify`, one thread, checking
 * what HAProxy can check without Lua — the algorithm, `iss`, `aud`, `exp` and the RS256 signature,
 * verified on every request (HAProxy caches the key, not results). No role check, no JSON-RPC
 * parsing, no schema, no rate limit. Optional: the benchmark uses it when `haproxy` is on PATH
 * (Debian: `apt-get install haproxy`).
 */
export async function haproxyVersion(): Promise<string | undefined> {
  const { stdout } = await promisify(execFile)('haproxy', ['-v']).catch(() => ({ stdout: '' }));
  return /HAProxy version (\S+)/.exec(stdout)?.[1];
}

/** Writes the configuration and the issuer's public key into `dir`; returns haproxy's argv. */
export function haproxyArgv(options: { dir: string; port: number; upstream: URL; issuer: string; publicKeyPem: string }): string[] {
  const keyFile = join(options.dir, 'issuer.pem');
  const configFile = join(options.dir, 'haproxy.cfg');
  writeFileSync(keyFile, options.publicKeyPem);
  writeFileSync(configFile, [
    'global',
    '  nbthread 1',
    '  maxconn 4000',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  http-reuse always',
    'frontend bench',
    `  bind 127.0.0.1:${options.port}`,
    '  http-request set-var(txn.bearer) http_auth_bearer',
    "  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')",
    '  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }',
    `  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.iss') -m str ${options.issuer} }`,
    "  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('$.aud') -m str ca-a2a-agents }",
    '  http-request set-var(txn.now) date()',
    "  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp',int)",
    '  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }',
    `  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${keyFile}") -m int 1 }`,
    '  default_backend agent',
    'backend agent',
    `  server agent ${options.upstream.host}`,
    '',
  ].join('\n'));
  return ['haproxy', '-db', '-f', configFile];
}
