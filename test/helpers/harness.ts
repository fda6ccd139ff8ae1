import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { signedHeaders } from '../../proxy/client/signed-headers.js';
import { createProofKey } from '../../proxy/integrity/proof.js';
import { shippedPolicyFile, type ShippedService } from '../../proxy/services.js';
import { startSidecar, type Sidecar, type SidecarOptions } from '../../proxy/sidecar.js';
import { AuditCapture } from './audit-capture.js';
import { startTestIssuer, type TestIssuer } from './test-issuer.js';
import { startUpstream, type RecordingUpstream } from './upstream.js';
import { tempDirSync } from './temp-dir.js';

export const RBAC_FILE = new URL('../../policies/rbac.yaml', import.meta.url).pathname;
export const SCHEMAS_DIR = new URL('../../policies/schemas/', import.meta.url).pathname;

export interface Harness {
  readonly sidecar: Sidecar;
  readonly issuer: TestIssuer;
  readonly upstream: RecordingUpstream;
  readonly audit: AuditCapture;
  /** POSTs a JSON-RPC body (object, or raw string or bytes) with a token. */
  call(body: unknown, options?: CallOptions): Promise<CallResult>;
  /** Reads one metric sample's value from /metrics (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export interface CallOptions {
  readonly token?: string | undefined;
  readonly path?: string;
  readonly method?: 'GET' | 'POST' | 'HEAD' | 'PUT';
  readonly headers?: Record<string, string | string[]>;
  /** Sign with a DPoP proof and Content-Digest, as a real client does (default true when a token is given). */
  readonly proof?: boolean;
  /** Aborts the call (the client going away). */
  readonly signal?: AbortSignal;
}

export interface CallResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: { jsonrpc?: string; id?: unknown; result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } } & Record<string, unknown>;
}

/** The smallest policy: one method, get_document, the shared roles, an upstream nothing listens on (the harness replaces it). */
export function minimalPolicy(service: string): string {
  return `service: ${service}
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
  get_document: {}
`;
}

/** Writes a policy file in a temp dir; `rbac` and `$ref`s may use RBAC_FILE and SCHEMAS_DIR. */
export function writePolicy(text: string): string {
  const dir = tempDirSync('policy');
  const file = join(dir, 'service.yaml');
  writeFileSync(file, text);
  return file;
}

/** A sidecar in front of a recording upstream, trusting a test issuer. */
export async function startHarness(options: { service?: ShippedService; policyFile?: string; sidecar?: Partial<SidecarOptions>; issuer?: TestIssuer } = {}): Promise<Harness> {
  const issuer = options.issuer ?? (await startTestIssuer());
  const upstream = await startUpstream();
  const audit = new AuditCapture();
  const proofKey = await createProofKey();
  const sidecar = await startSidecar({
    policyFile: options.policyFile ?? shippedPolicyFile(options.service ?? 'archivist'),
    upstream: upstream.url,
    issuer: issuer.issuer,
    logDestination: audit,
    watchPolicy: false,
    ...options.sidecar,
  });
  return {
    sidecar, issuer, upstream, audit,
    async call(body, callOptions = {}) {
      const method = callOptions.method ?? 'POST';
      const payload = method === 'POST' ? (typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body)) : undefined;
      const headers: Record<string, string | string[]> = { 'content-type': 'application/json' };
      if (callOptions.token !== undefined) {
        const path = (callOptions.path ?? '/message').split('?')[0] as string;
        const signed = callOptions.proof === false
          ? { authorization: `Bearer ${callOptions.token}` }
          : await signedHeaders({ key: proofKey, accessToken: callOptions.token, tokenType: 'Bearer', method, url: `${sidecar.url}${path}`, body: payload });
        Object.assign(headers, signed);
      }
      Object.assign(headers, callOptions.headers);
      const response = await request(`${sidecar.url}${callOptions.path ?? '/message'}`, {
        method,
        headers,
        body: payload,
        ...(callOptions.signal ? { signal: callOptions.signal } : {}),
      });
      const text = await response.body.text();
      let json = {};
      try {
        json = text ? JSON.parse(text) : {};
      } catch {
        json = { raw: text };
      }
      return { status: response.statusCode, headers: response.headers, json };
    },
    async metric(name, labels = {}) {
      const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return 0;
    },
    async close() {
      await sidecar.close();
      await upstream.close();
      if (!options.issuer) await issuer.close();
    },
  };
}

/** A JSON-RPC request body. */
export function rpc(method: string, params?: unknown, id: string | number = 1): Record<string, unknown> {
  return params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params };
}

export const DOC_ID = '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b';
