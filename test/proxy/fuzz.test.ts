import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { base64url, calculateJwkThumbprint } from 'jose';
import { signedHeaders } from '../../proxy/client/signed-headers.js';
import { createProofKey, type ProofKey } from '../../proxy/integrity/proof.js';
import { startHarness, type Harness } from '../helpers/harness.js';
import type { RecordedRequest } from '../helpers/upstream.js';
import { Rng } from '../helpers/rng.js';

/**
 * A hostile-input fuzz campaign against real sidecars (the shipped archivist and MCP gateway
 * policies, DPoP required) in front of a recording upstream, over raw sockets: request heads
 * (methods, targets, versions, framing, odd and duplicate headers), Authorization values and
 * JSON-RPC / call_tool bodies, generated and mutated from a seeded PRNG. A failure names the seed
 * and the case; `FUZZ_SEED=… FUZZ_CASES=…` replays it, FUZZ_TRACE=1 prints every case and its
 * answers, FUZZ_STATS=1 the refusals reached.
 *
 * The oracle is written here, apart from proxy/: for every request the upstream receives it checks
 * again, on its own, that it should have passed (a valid token of a role the policy, written out
 * by hand below, allows the exact method or tool and arguments; params valid against the shipped
 * schemas; strict JSON; a fresh proof bound to that token and body; the normalised path; no client
 * x-ca-a2a-* header); every answer the sidecar writes itself must be one documented JSON-RPC error
 * (docs/errors.md, status and code as the table says, never internal.error) that does not echo a
 * token; every case is answered or closed within a deadline, and the sidecar serves afterwards.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_ca2a);
const CASES = Number(process.env.FUZZ_CASES ?? 4000);
/** A case not answered or closed within this is a hang. */
const DEADLINE_MS = 10_000;
/** A connection quiet this long is half-closed: a request still waiting for its body then ends. */
const QUIET_MS = 250;
const MAX_BODY = 1024 * 1024;
const UUID = '6f1c1c8e-8a5a-4c53-9d0b-3c2a1e4f5a6b';

// ---------------------------------------------------------------- the documented errors (docs/errors.md)

const DOCUMENTED = new Map<string, { status: number; code: number }>();
for (const line of readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8').split('\n')) {
  const row = /^\| `([a-z_]+\.[a-z_]+)` \| (\d{3}) \| (-\d+) \|/.exec(line);
  if (row) DOCUMENTED.set(row[1] as string, { status: Number(row[2]), code: Number(row[3]) });
}

// ---------------------------------------------------------------- the oracle's own view of the policy

/** policies/rbac.yaml and policies/services/archivist.yaml, written out by hand. */
const ARCHIVIST_METHODS = ['archive_document', 'get_document', 'list_documents', 'delete_document'] as const;
const ROLE_ALLOWS: Record<string, readonly string[]> = {
  admin: ARCHIVIST_METHODS,
  orchestrator: ['archive_document'],
  viewer: ['get_document', 'list_documents'],
};
const ROLE_DENIES: Record<string, readonly string[]> = { orchestrator: ['delete_document', 'revoke_token'] };

function mayCall(roles: readonly string[], method: string): boolean {
  if (!(ARCHIVIST_METHODS as readonly string[]).includes(method)) return false;
  if (roles.some((role) => ROLE_DENIES[role]?.includes(method))) return false;
  return roles.some((role) => ROLE_ALLOWS[role]?.includes(method));
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
// The shipped schema: ajv-formats' uuid (hex of any case) without its optional urn:uuid: prefix.
const UUID_FORMAT = /^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i;

function paramsValid(method: string, params: unknown): boolean {
  const value = params ?? {};
  if (!isPlainObject(value)) return false;
  if (method === 'list_documents') {
    for (const key of Object.keys(value)) if (key !== 'limit' && key !== 'cursor') return false;
    if ('limit' in value && !(typeof value.limit === 'number' && Number.isInteger(value.limit) && value.limit >= 1 && value.limit <= 100)) return false;
    // JSON Schema lengths count code points.
    if ('cursor' in value && !(typeof value.cursor === 'string' && [...value.cursor].length <= 200)) return false;
    return true;
  }
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === 'document_id' && typeof value.document_id === 'string' && UUID_FORMAT.test(value.document_id);
}

function envelopeValid(element: unknown, roles: readonly string[]): string | undefined {
  if (!isPlainObject(element)) return 'element not an object';
  for (const key of Object.keys(element)) if (!['jsonrpc', 'method', 'params', 'id'].includes(key)) return `member ${key}`;
  if (element.jsonrpc !== '2.0') return 'jsonrpc';
  const { method, params, id } = element;
  if (typeof method !== 'string') return 'method type';
  if (params !== undefined && (typeof params !== 'object' || params === null)) return 'params type';
  if (!(id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) return 'id type';
  if (!mayCall(roles, method)) return `roles ${roles.join(',')} may not call ${JSON.stringify(method)}`;
  if (!paramsValid(method, params)) return `params of ${method}: ${JSON.stringify(params)?.slice(0, 200)}`;
  return undefined;
}

/** policies/services/mcp.yaml and the tool grants of policies/rbac.yaml, written out by hand. */
const MCP_TOOLS = ['s3_list_objects', 's3_get_object', 's3_put_object', 's3_delete_object', 'documents_create', 'documents_get', 'documents_list', 'documents_update',
  'documents_claim', 'documents_claim_stale', 'documents_delete', 'processing_logs_append', 'processing_logs_list'] as const;
type ArgumentRule = (args: unknown) => boolean;
const keyUnder = (prefix: string, required: boolean): ArgumentRule => (args) => isPlainObject(args) && (Object.hasOwn(args, 'key') ? typeof args.key === 'string' && args.key.startsWith(prefix) : !required);
const noArchiveKey: ArgumentRule = (args) => isPlainObject(args) && !Object.hasOwn(args, 'archive_key');
const TOOL_GRANTS: Record<string, { allow: readonly string[] | '*'; deny?: readonly string[]; args?: Record<string, ArgumentRule> }> = {
  admin: { allow: '*' },
  orchestrator: {
    allow: ['s3_put_object', 'documents_create', 'documents_get', 'documents_list', 'documents_update', 'documents_claim', 'documents_claim_stale', 'processing_logs_append', 'processing_logs_list'],
    args: {
      s3_put_object: keyUnder('uploads/', true),
      documents_create: (args) => isPlainObject(args) && (!Object.hasOwn(args, 's3_key') || (typeof args.s3_key === 'string' && args.s3_key.startsWith('uploads/'))),
      documents_update: noArchiveKey,
    },
  },
  extractor: { allow: ['s3_get_object', 'documents_get', 'documents_update'], args: { s3_get_object: keyUnder('uploads/', true), documents_update: noArchiveKey } },
  validator: { allow: ['s3_get_object', 'documents_get', 'documents_update'], deny: ['s3_put_object', 's3_delete_object'], args: { s3_get_object: keyUnder('uploads/', true), documents_update: noArchiveKey } },
  archivist: {
    allow: ['s3_get_object', 's3_put_object', 's3_delete_object', 'documents_get', 'documents_list', 'documents_update', 'documents_delete'],
    args: {
      s3_get_object: keyUnder('uploads/', true),
      s3_put_object: keyUnder('archive/', true),
      documents_update: (args) => isPlainObject(args) && (!Object.hasOwn(args, 'archive_key') || (typeof args.archive_key === 'string' && args.archive_key.startsWith('archive/'))),
    },
  },
};

function mayCallTool(roles: readonly string[], tool: unknown, args: unknown): boolean {
  if (typeof tool !== 'string' || !(MCP_TOOLS as readonly string[]).includes(tool)) return false;
  const grants = roles.map((role) => TOOL_GRANTS[role]).filter((grant) => grant !== undefined);
  if (grants.some((grant) => grant.deny?.includes(tool))) return false;
  return grants.some((grant) => (grant.allow === '*' || grant.allow.includes(tool)) && (grant.args?.[tool]?.(args ?? {}) ?? true));
}

function mcpElementProblem(element: unknown, roles: readonly string[]): string | undefined {
  if (!isPlainObject(element)) return 'element not an object';
  for (const key of Object.keys(element)) if (!['jsonrpc', 'method', 'params', 'id'].includes(key)) return `member ${key}`;
  if (element.jsonrpc !== '2.0') return 'jsonrpc';
  const { method, params, id } = element;
  if (params !== undefined && (typeof params !== 'object' || params === null)) return 'params type';
  if (!(id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) return 'id type';
  if (method === 'initialize' || method === 'notifications/initialized' || method === 'ping' || method === 'tools/list') {
    return roles.some((role) => role in TOOL_GRANTS) ? undefined : `roles ${roles.join(',')} hold no tool`;
  }
  if (method !== 'tools/call') return `method ${JSON.stringify(method)} is not served`;
  const value = params ?? {};
  if (!isPlainObject(value)) return 'tools/call params not an object';
  for (const key of Object.keys(value)) if (!['name', 'arguments', '_meta'].includes(key)) return `tools/call params member ${key}`;
  if (typeof value.name !== 'string' || value.name.length === 0 || value.name.length > 128) return 'tool name';
  if (value.arguments !== undefined && !isPlainObject(value.arguments)) return 'arguments not an object';
  if (value._meta !== undefined && !isPlainObject(value._meta)) return '_meta not an object';
  if (!mayCallTool(roles, value.name, value.arguments)) return `roles ${roles.join(',')} may not call tool ${JSON.stringify(value.name)} with ${JSON.stringify(value.arguments)?.slice(0, 200)}`;
  return undefined;
}

/** A /call_tool body ({tool, arguments}) as the tools/call it stands for, or why it is none. */
function callToolElement(value: unknown): unknown {
  if (!isPlainObject(value)) return undefined;
  for (const key of Object.keys(value)) if (key !== 'tool' && key !== 'arguments') return undefined;
  if (value.arguments !== undefined && !isPlainObject(value.arguments)) return undefined;
  return { jsonrpc: '2.0', method: 'tools/call', params: { name: value.tool, arguments: value.arguments ?? {} } };
}

/**
 * A strict JSON reader of the oracle's own: RFC 8259 grammar, no key twice in an object (compared
 * decoded), no prototype keys, at most 64 levels. Returns why not, or undefined.
 */
function strictJsonProblem(text: string): string | undefined {
  let i = 0;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what a JSON string may not hold raw
  const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const fail = (why: string): never => {
    throw new Error(`${why} at ${i}`);
  };
  const string = (): string => {
    STRING.lastIndex = i;
    const match = STRING.exec(text);
    if (!match) return fail('string');
    i = STRING.lastIndex;
    return JSON.parse(match[0]) as string;
  };
  const value = (depth: number): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth + 1 > 64) fail('too deep');
      i++;
      ws();
      const close = c === '{' ? '}' : ']';
      if (text[i] === close) {
        i++;
        return;
      }
      const keys = new Set<string>();
      for (;;) {
        if (c === '{') {
          ws();
          const key = string();
          if (keys.has(key)) fail('duplicate key');
          if (['__proto__', 'constructor', 'prototype'].includes(key)) fail('prototype key');
          keys.add(key);
          ws();
          if (text[i++] !== ':') fail('colon');
        }
        value(depth + 1);
        ws();
        const next = text[i++];
        if (next === close) return;
        if (next !== ',') fail('separator');
      }
    }
    if (c === '"') {
      string();
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    NUMBER.lastIndex = i;
    if (!NUMBER.exec(text)) fail('value');
    i = NUMBER.lastIndex;
  };
  try {
    value(0);
    ws();
    if (i !== text.length) fail('trailing data');
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}

/** A query parameter a framework reads as a token (PHP's '.', ' ', '+' for '_', a '[]' suffix, escapes). */
function tokenParameter(query: string): boolean {
  return query.split(/[&;]/).some((parameter) => {
    let name = parameter.split('=')[0] as string;
    name = name.replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    name = name.trim().toLowerCase().replace(/\[\]$/, '').replace(/[ .+]/g, '_');
    return name === 'access_token' || name === 'token' || name === 'id_token';
  });
}

// ---------------------------------------------------------------- what the test minted

interface TokenFacts {
  readonly token: string;
  readonly valid: boolean;
  readonly sub: string;
  readonly azp: string;
  readonly roles: readonly string[];
  readonly bound: boolean;
}

interface ProofFacts {
  readonly proof: string;
  readonly token: string;
  readonly htm: string;
  readonly htu: string;
  /** base64url SHA-256 of the body the proof was made for ('' without one). */
  readonly htd: string;
}

const sha = (bytes: Buffer | string): string => base64url.encode(createHash('sha256').update(bytes).digest());

// ---------------------------------------------------------------- raw HTTP

interface RawRequest {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  body: Buffer;
  framing: 'length' | 'chunked' | 'both' | 'none' | 'short' | 'long' | 'chunked-bad';
}

function serialise(request: RawRequest): Buffer {
  const headers = [...request.headers];
  let body = request.body;
  const chunked = (): Buffer => Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
  switch (request.framing) {
    case 'length':
      headers.push(['Content-Length', String(body.length)]);
      break;
    case 'chunked':
      headers.push(['Transfer-Encoding', 'chunked']);
      body = body.length === 0 ? Buffer.from('0\r\n\r\n') : chunked();
      break;
    case 'both':
      headers.push(['Content-Length', String(body.length)], ['Transfer-Encoding', 'chunked']);
      body = chunked();
      break;
    case 'short':
      headers.push(['Content-Length', String(Math.max(0, body.length - 7))]);
      break;
    case 'long':
      headers.push(['Content-Length', String(body.length + 5)]);
      break;
    case 'chunked-bad':
      headers.push(['Transfer-Encoding', 'chunked']);
      body = Buffer.concat([Buffer.from(`${(body.length + 3).toString(16)};x=1\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
      break;
    case 'none':
      break;
  }
  const head = `${request.method} ${request.target} ${request.version}\r\n${headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

interface RawResponse {
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** The whole body has come (by its length or last chunk). */
  readonly complete: boolean;
}

/** Splits what came back into responses (1xx ones dropped); HEAD answers have no body. */
function parseResponses(data: Buffer, headAnswers: boolean[]): RawResponse[] {
  const responses: RawResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const head = data.subarray(at, end).toString('latin1');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    at = end + 4;
    if (status >= 100 && status < 200) continue;
    const isHead = headAnswers[responses.length] ?? false;
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    let body = '';
    let complete = true;
    if (isHead || status === 204 || status === 304) {
      body = '';
    } else if (length) {
      body = data.subarray(at, at + Number(length[1])).toString('utf8');
      complete = data.length >= at + Number(length[1]);
      at += Number(length[1]);
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const parts: Buffer[] = [];
      complete = false;
      for (;;) {
        const line = data.indexOf('\r\n', at);
        if (line === -1) break;
        const size = parseInt(data.subarray(at, line).toString('latin1'), 16);
        at = line + 2;
        if (!(size > 0)) {
          complete = true;
          at = data.indexOf('\r\n\r\n', at - 2) + 4;
          break;
        }
        parts.push(data.subarray(at, at + size));
        at += size + 2;
      }
      body = Buffer.concat(parts).toString('utf8');
    } else {
      body = data.subarray(at).toString('utf8');
      complete = false;
      at = data.length;
    }
    responses.push({ status, head, body, complete });
  }
  return responses;
}

/**
 * Writes the payload and reads until the sidecar has answered every request of it or closed the
 * connection. A connection left quiet (a body promised and not sent) is half-closed after a
 * moment, which the sidecar must answer or close; `hung` past the deadline.
 */
function exchange(port: number, payload: Buffer, headAnswers: boolean[]): Promise<{ data: Buffer; hung: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (hung: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(quiet);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), hung });
    };
    const timer = setTimeout(() => finish(true), DEADLINE_MS);
    const nudge = (): void => {
      if (!socket.destroyed) socket.end();
    };
    let quiet = setTimeout(nudge, QUIET_MS);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      clearTimeout(quiet);
      quiet = setTimeout(nudge, QUIET_MS);
      const data = Buffer.concat(chunks);
      const responses = parseResponses(data, headAnswers);
      if (responses.length === headAnswers.length && responses.at(-1)?.complete === true) finish(false);
    });
    socket.on('close', () => finish(false));
    // A reset after the sidecar refused and closed is an answer too.
    socket.on('error', () => finish(false));
    socket.write(payload);
  });
}

// ---------------------------------------------------------------- generators

/** JSON text of a value, with room for hand-written hostile spellings. */
function callText(rng: Rng, method: string, params: string | undefined, id: string | undefined): string {
  const members: string[] = ['"jsonrpc":"2.0"', `"method":${method}`];
  if (params !== undefined) members.push(`"params":${params}`);
  if (id !== undefined) members.push(`"id":${id}`);
  // Member order is free.
  for (let i = members.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [members[i], members[j]] = [members[j] as string, members[i] as string];
  }
  return `{${members.join(',')}}`;
}

function genMethod(rng: Rng): string {
  if (rng.chance(0.75)) return JSON.stringify(rng.pick(ARCHIVIST_METHODS));
  return rng.pick([
    '"get\\u005fdocument"', '"GET_DOCUMENT"', '"get_document "', '" get_document"', '"get_document\\u0000"', '"delete_document"',
    '"revoke_token"', '"tools/call"', '"rpc.discover"', '""', '"get_document\\ud800"', '"list_documents\\/"', '"*"',
    '"check_status"', '1', 'null', '["get_document"]', '{"name":"get_document"}', `"${'a'.repeat(129)}"`, '"archive_documen\\u0074"',
  ]);
}

function genUuid(rng: Rng): string {
  return rng.pick([
    `"${UUID}"`, `"${UUID.toUpperCase()}"`, `"urn:uuid:${UUID}"`, `"${UUID} "`, `" ${UUID}"`, `"${UUID}\\n"`, `"${UUID.slice(0, -1)}"`,
    `"${UUID}0"`, `"${UUID.replaceAll('-', '')}"`, `"\\u0036${UUID.slice(1)}"`, `"${UUID.slice(0, 8)}\\u002d${UUID.slice(9)}"`,
    `"${UUID.replace('6', '\\ud800')}"`, `"${UUID.replace('a', 'g')}"`, `"${UUID.replace('6', '٦')}"`, '"00000000-0000-0000-0000-000000000000"',
    '"../../etc/passwd"', '""', '1', 'null', `["${UUID}"]`, `{"$ne":null}`, `"${UUID}\\u0000"`, '"ffffffff-ffff-ffff-ffff-ffffffffffff"',
  ]);
}

function genLimit(rng: Rng): string {
  return rng.pick(['1', '100', '0', '101', '-1', '50', '1.0', '1e2', '100.0000000000000001', '1e400', '-0', '0.5', '99.5', '"5"', 'true', 'null', '[5]',
    '1E0', '123456789012345678901234567890', '-1e-400', '2e1', '0.99999999999999999']);
}

function genCursor(rng: Rng): string {
  return rng.pick(['"abc"', '""', `"${'x'.repeat(200)}"`, `"${'x'.repeat(201)}"`, `"${'😀'.repeat(150)}"`, `"${'😀'.repeat(201)}"`,
    '"\\ud800"', '"\\udfff\\ud800"', `"${'\\u0041'.repeat(200)}"`, `"${'\\u0041'.repeat(201)}"`, '1', 'null', '{}']);
}

function genParams(rng: Rng, method: string): string | undefined {
  if (rng.chance(0.07)) return undefined;
  if (rng.chance(0.06)) return rng.pick(['[]', `["${UUID}"]`, '"x"', 'null', '1', 'true', '{}']);
  const members: string[] = [];
  if (method.includes('list_documents')) {
    if (rng.chance(0.7)) members.push(`"limit":${genLimit(rng)}`);
    if (rng.chance(0.5)) members.push(`"cursor":${genCursor(rng)}`);
  } else {
    members.push(`"document_id":${rng.chance(0.6) ? `"${UUID}"` : genUuid(rng)}`);
  }
  if (rng.chance(0.08)) members.push(rng.pick(['"extra":1', '"document_id":"x"', '"limit":5', '"__proto__":{"admin":true}', '"constructor":{"prototype":{}}',
    '"\\u005f_proto__":{}', '"prototype":1', '"Document_id":"x"', '"document\\u005fid":"x"', '"toString":1']));
  return `{${members.join(',')}}`;
}

function genId(rng: Rng): string | undefined {
  if (rng.chance(0.1)) return undefined;
  return rng.chance(0.7) ? String(rng.int(1000)) : rng.pick(['"abc"', 'null', '1.5', '-0', '1e400', '-1e400', '{}', '[]', 'true', '"\\ud800"',
    '123456789012345678901234567890', `"${'i'.repeat(300)}"`]);
}

function genCall(rng: Rng): string {
  const method = genMethod(rng);
  return callText(rng, method, genParams(rng, method), genId(rng));
}

function nest(depth: number, inner: string): string {
  return '['.repeat(depth) + inner + ']'.repeat(depth);
}

/** Structural mutations of a call's text. */
function mutateCall(rng: Rng, text: string): string {
  switch (rng.int(16)) {
    case 0: return text.replace('{', '{"method":"delete_document",');
    case 1: return text.replace('{', '{"meth\\u006fd":"delete_document",');
    case 2: return text.replace(/}$/, ',"method":"delete_document"}');
    case 3: return text.replace('{', '{"__proto__":{"method":"delete_document"},');
    case 4: return text.replace('"params":{', '"params":{"a":{"b":{"constructor":{}}},');
    case 5: return text.replace('{', '{"extra":' + nest(rng.pick([60, 62, 63, 64, 70]), '1') + ',');
    case 6: return text.replace('"params":{', `"params":{"deep":${nest(rng.pick([59, 61, 62, 63, 64]), '0')},`);
    case 7: return text.replace('"2.0"', rng.pick(['"2.00"', '2.0', '"2\\u002e0"', '"2.0 "', 'null', '"1.0"']));
    case 8: return text.replace('{', '{"jsonrpc":"2.0",');
    case 9: return text.replace(/}$/, ',"result":1}');
    case 10: return text.replace(/}$/, '');
    case 11: return `${text} `;
    case 12: return `\ufeff${text}`;
    case 13: return `${text}${rng.pick(['x', '\u0000', ',', '{}', '//', '\n\n'])}`;
    case 14: return text.replace('"params":{', '"params":{"x":"\\ud800\\udc00\\udbff","y":"\\u0000\\u001f",');
    default: return text.replaceAll(':', rng.pick([': ', ' :', '\t:\t', ':\r\n']));
  }
}

function genBody(rng: Rng): Buffer {
  const roll = rng.next();
  let text: string;
  if (roll < 0.72) {
    text = genCall(rng);
    if (rng.chance(0.3)) text = mutateCall(rng, text);
  } else if (roll < 0.9) {
    const length = rng.pick([0, 1, 2, 3, 5, 19, 20, 21]);
    const elements: string[] = [];
    for (let i = 0; i < length; i++) elements.push(rng.chance(0.8) ? genCall(rng) : rng.chance(0.5) ? mutateCall(rng, genCall(rng)) : rng.pick(['1', 'null', '[]', '{}', '"x"']));
    text = `[${elements.join(',')}]`;
  } else {
    text = rng.pick(['', 'null', '{}', '[[]]', '"x"', '1', '{"jsonrpc":"2.0"}', `[${'['.repeat(5000)}`, `{"a":${'{"a":'.repeat(100)}1${'}'.repeat(101)}`, 'nul', 'truex']);
  }
  let body = Buffer.from(text, 'utf8');
  if (rng.chance(0.03)) {
    // Invalid UTF-8: a lone continuation byte, an overlong '/', a CESU-8 surrogate, a truncated sequence.
    const bad = rng.pick([[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xff]]);
    const at = body.indexOf('"get') + 1 || body.length;
    body = Buffer.concat([body.subarray(0, at), Buffer.from(bad), body.subarray(at)]);
  }
  if (rng.chance(0.01)) body = Buffer.concat([body, Buffer.alloc(MAX_BODY - body.length + rng.pick([-1, 0, 1]), 0x20)]);
  return body;
}

function genToolArguments(rng: Rng): string | undefined {
  if (rng.chance(0.08)) return rng.pick([undefined, 'null', '[]', '"x"', '1']);
  const members: string[] = [];
  if (rng.chance(0.7)) {
    members.push(`"key":${rng.pick(['"uploads/a.pdf"', '"archive/a.pdf"', '"uploads/../archive/a"', '"Uploads/a"', '""', '"uploads/"', '"\\u0000uploads/a"', '" uploads/a"',
      '"uploads\\u002fa"', '"\\u0075ploads/a"', '"archive\\/a"', '1', 'null', '["uploads/a"]', '"secrets/x"'])}`);
  }
  if (rng.chance(0.3)) members.push(`"archive_key":${rng.pick(['"archive/a"', '"uploads/a"', 'null', '""', '"archive\\u002fa"'])}`);
  if (rng.chance(0.2)) members.push(`"s3_key":${rng.pick(['"uploads/a"', '"archive/a"', '1'])}`);
  if (rng.chance(0.1)) members.push(rng.pick(['"key":"archive/x"', '"arch\\u0069ve_key":"x"', '"__proto__":{"key":"uploads/a"}', '"constructor":{}', '"document_id":"x"']));
  return `{${members.join(',')}}`;
}

function genToolName(rng: Rng): string {
  return rng.chance(0.85) ? JSON.stringify(rng.pick(MCP_TOOLS)) : rng.pick(['"S3_GET_OBJECT"', '"s3_get_object "', '"*"', '""', '"s3_\\u0067et_object"', '"admin_tool"', '1', 'null', `"${'t'.repeat(129)}"`]);
}

function genMcpCall(rng: Rng): string {
  if (rng.chance(0.2)) {
    const method = rng.pick(['"initialize"', '"notifications/initialized"', '"ping"', '"tools/list"', '"tools/List"', '"resources/list"', '"rpc.ping"', '"prompts/get"']);
    return callText(rng, method, rng.chance(0.6) ? undefined : rng.pick(['{}', '[]', '{"a":1}']), genId(rng));
  }
  const members: string[] = [`"name":${genToolName(rng)}`];
  const args = genToolArguments(rng);
  if (args !== undefined) members.push(`"arguments":${args}`);
  if (rng.chance(0.05)) members.push(rng.pick(['"_meta":{}', '"_meta":1', '"tool":"x"', '"name":"documents_delete"', '"n\\u0061me":"documents_delete"']));
  return callText(rng, '"tools/call"', `{${members.join(',')}}`, genId(rng));
}

function genMcpBody(rng: Rng, kind: 'jsonrpc' | 'call_tool'): Buffer {
  let text: string;
  if (kind === 'call_tool') {
    const members = [`"tool":${genToolName(rng)}`];
    const args = genToolArguments(rng);
    if (args !== undefined) members.push(`"arguments":${args}`);
    if (rng.chance(0.08)) members.push(rng.pick(['"tool":"documents_delete"', '"t\\u006fol":"documents_delete"', '"name":"x"', '"jsonrpc":"2.0"', '"__proto__":{}']));
    text = `{${members.join(',')}}`;
    if (rng.chance(0.05)) text = rng.pick(['[]', 'null', '"x"', `[${text}]`]);
  } else if (rng.chance(0.8)) {
    text = genMcpCall(rng);
    if (rng.chance(0.2)) text = mutateCall(rng, text);
  } else {
    const elements: string[] = [];
    for (let i = rng.pick([1, 2, 3, 20, 21]); i > 0; i--) elements.push(genMcpCall(rng));
    text = `[${elements.join(',')}]`;
  }
  return Buffer.from(text, 'utf8');
}

interface ServiceOracle {
  readonly service: 'archivist' | 'mcp';
  readonly cases: number;
  /** POST paths and the kind of body each takes. */
  readonly endpoints: Readonly<Record<string, 'jsonrpc' | 'call_tool'>>;
  readonly publicPaths: readonly string[];
  readonly roleSets: readonly (readonly string[])[];
  /** Roles worth holding here: most cases use a valid token carrying one. */
  readonly usefulRoles: readonly string[];
  genBody(rng: Rng, kind: 'jsonrpc' | 'call_tool'): Buffer;
  elementProblem(element: unknown, roles: readonly string[]): string | undefined;
  /** A call the admin token may always make: the sidecar still serves after the campaign. */
  readonly alive: { readonly path: string; readonly body: unknown };
  /** Refusals every campaign must have reached. */
  readonly reached: readonly string[];
}

const ARCHIVIST: ServiceOracle = {
  service: 'archivist',
  cases: CASES,
  endpoints: { '/message': 'jsonrpc' },
  publicPaths: ['/health', '/.well-known/agent-card.json', '/card'],
  roleSets: [['viewer'], ['admin'], ['orchestrator'], ['lambda'], ['viewer', 'orchestrator'], ['admin', 'orchestrator'], [], ['root'], ['Admin'], ['document-processor']],
  usefulRoles: Object.keys(ROLE_ALLOWS),
  genBody: (rng) => genBody(rng),
  elementProblem: envelopeValid,
  alive: { path: '/message', body: { jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: UUID } } },
  reached: ['transport.bad_path', 'transport.bad_framing', 'authn.token_malformed', 'jsonrpc.duplicate_key', 'jsonrpc.forbidden_key', 'authz.method_denied', 'params.invalid', 'integrity.proof_missing'],
};

const MCP: ServiceOracle = {
  service: 'mcp',
  cases: Math.round(CASES / 2),
  endpoints: { '/mcp': 'jsonrpc', '/call_tool': 'call_tool' },
  publicPaths: ['/health'],
  roleSets: [['admin'], ['orchestrator'], ['extractor'], ['validator'], ['archivist'], ['validator', 'archivist'], ['orchestrator', 'archivist'], ['extractor', 'orchestrator'], ['viewer'], []],
  usefulRoles: Object.keys(TOOL_GRANTS),
  genBody: genMcpBody,
  elementProblem: mcpElementProblem,
  alive: { path: '/mcp', body: { jsonrpc: '2.0', id: 1, method: 'ping' } },
  reached: ['authz.tool_denied', 'authz.arguments_denied', 'params.invalid', 'jsonrpc.invalid_request'],
};

const PATHS = ['/message', '//message', '/./message', '/x/../message', '/%6d%65ssage', '/message/', '/MESSAGE', '/message?x=1', '/message?access_token=x',
  '/message?ACCESS%5FTOKEN=x', '/message?a.ccess_token=1', '/message?id.token[]=1', '/message%2f', '/message%2F..', '/message\\', '/%2e%2e/message', '/../message', '/message/..',
  '/message/.', '/message;x', '/message#f', '/message%00', '/message%20', 'http://127.0.0.1/message', '*', '/health/../message', '/message/../health', '/health',
  '/.well-known/agent-card.json', '/card', '/card/', '//health', '/health?x', '/admin', '/metrics', '/m%65ssage%2e', '/message%', '/message%zz', '/%c0%ae%c0%ae/message',
  '/message/%2e%2e/message', '/message\u00e9', '/message?%00', '/message?\u0001', '/.well-known/../message', '/message/ '];

const HOSTILE_HEADERS: [string, string][] = [
  ['X-CA-A2A-Subject', 'service-account-admin'], ['x-ca-a2a-roles', 'admin'], ['X_CA_A2A_ROLES', 'admin'], ['x_ca-a2a_subject', 'root'],
  ['X-Ca-A2a-Client-Id', 'admin'], ['x-ca-a2a-request-id', 'forged'], ['x-ca-a2a-anything', '1'], ['X-CA-A2A_Roles', 'admin'],
  ['Connection', 'x-ca-a2a-subject, close'], ['Connection', 'keep-alive, Authorization'], ['Connection', 'content-digest'], ['Connection', 'Content-Type'], ['Connection', 'close, content-type, x-ca-a2a-roles'], ['Connection', 'host'], ['X-Original-URL', '/admin'],
  ['X-Rewrite-URL', '/admin'], ['X-HTTP-Method-Override', 'DELETE'], ['X_HTTP_Method', 'PUT'], ['Proxy-Authorization', 'Bearer x'], ['Upgrade', 'h2c'], ['TE', 'trailers'], ['Expect', '100-continue'], ['Expect', 'x-fancy'],
  ['Content-Encoding', 'gzip'], ['Content-Encoding', 'identity'], ['Transfer-Encoding', 'chunked'], ['Transfer-Encoding', 'gzip, chunked'],
  ['Transfer-Encoding', 'identity'], ['Content-Length', '5'], ['Content-Length', '+5'], ['Content-Length', '-1'], ['Content_Length', '0'],
  ['Transfer_Encoding', 'chunked'], ['traceparent', '00-00000000000000000000000000000000-0000000000000000-01'], ['traceparent', 'junk'],
  ['X-Forwarded-For', '10.0.0.1, 1.2.3.4'], ['X-Forwarded-Host', 'evil'], ['Host', 'evil.example'], ['Host', '127.0.0.1'], ['host', 'h/x?'],
  ['Content-Type', 'text/plain'], ['Content-Type', 'application/json; charset=latin1'], ['Content-Type', 'APPLICATION/JSON'],
  ['Content-Type', 'application/json;charset="utf-8"'], ['Content-Type', 'application/json, text/plain'], ['Content-Digest', 'sha-256=:AAAA:'],
  ['Content-Digest', 'sha-512=:AAAA:'], ['DPoP', 'x.y.z'], ['Cookie', 'a=1'], ['Cookie', 'b=2'], ['X-Obs', 'a\r\n folded'], ['X-Obs', 'a\r\n\tb: c'],
  ['X-Nul', 'a\u0000b'], ['X-Cr', 'a\rb'], ['X-Lf', 'a\nX-CA-A2A-Roles: admin'], ['X-Ctl', '\u0001'], ['X Space', '1'], ['X-Colon:', '1'], ['', 'empty'],
  ['X-Long', 'x'.repeat(20_000)], ['Authorization', 'Bearer x'], ['authorization', ''], ['Content-Type', ''], ['constructor', '1'], ['__proto__', '1'],
  ['Accept-Encoding', 'gzip'], ['Range', 'bytes=0-1'], ['If-None-Match', '*'], ['Max-Forwards', '0'], ['Via', '1.1 evil'], ['Forwarded', 'for=1.2.3.4;host=evil'],
];

interface Case {
  readonly description: string;
  readonly payload: Buffer;
  /** Per response in order: whether it answers a HEAD. */
  readonly headAnswers: boolean[];
}

// ---------------------------------------------------------------- the campaign

function campaign(oracle: ServiceOracle): void {
describe(`hostile-input fuzz campaign: ${oracle.service} (seeded)`, () => {
  let h: Harness;
  let key: ProofKey;
  let boundKey: ProofKey;
  let boundThumbprint: string;
  const tokens = new Map<string, TokenFacts>();
  const proofs = new Map<string, ProofFacts>();
  const usedProofs = new Set<string>();
  /** Every case payload each proof was sent in. */
  const proofPayloads = new Map<string, string[]>();
  let current: TokenFacts[] = [];
  let generation = 0;

  before(async () => {
    h = await startHarness({ service: oracle.service });
    key = await createProofKey();
    boundKey = await createProofKey();
    boundThumbprint = await calculateJwkThumbprint(boundKey.publicJwk);
  });
  after(() => h.close());


  /** A fresh set of tokens every few cases (the rate limit is 300 a minute per subject). */
  async function mint(): Promise<void> {
    generation++;
    const made: TokenFacts[] = [];
    const add = async (roles: readonly string[], claims: Record<string, unknown>, valid: boolean, bound = false): Promise<void> => {
      const sub = `fuzz-${generation}-${made.length}`;
      const token = await h.issuer.sign({ sub, azp: `client-${made.length}`, realm_access: { roles: [...roles] }, ...claims, ...(bound ? { cnf: { jkt: boundThumbprint } } : {}) });
      const facts = { token, valid, sub, azp: `client-${made.length}`, roles, bound };
      tokens.set(token, facts);
      made.push(facts);
    };
    for (const roles of oracle.roleSets) await add(roles, {}, true);
    await add(['admin'], {}, true, true);
    await add(oracle.roleSets[2] as readonly string[], {}, true, true);
    const now = Math.floor(Date.now() / 1000);
    await add(['admin'], { exp: now - 120, iat: now - 400 }, false);
    await add(['admin'], { aud: 'another-audience' }, false);
    await add(['admin'], { iss: 'http://evil/realms/test' }, false);
    await add(['admin'], { iat: now + 600, exp: now + 900 }, false);
    await add(['admin'], { exp: now + 2 * 86_400 }, false);
    await add(['admin'], { jti: ' ' }, false);
    current = made;
  }

  function authorizationValues(rng: Rng, facts: TokenFacts): string[] {
    const t = facts.token;
    const scheme = facts.bound ? 'DPoP' : 'Bearer';
    if (rng.chance(0.8)) return [`${scheme} ${t}`];
    return [rng.pick([
      `${scheme.toLowerCase()} ${t}`, `${scheme.toUpperCase()} ${t}`, `${scheme}  ${t}`, `${scheme} ${t} `, `${scheme}\t${t}`, `${scheme} ${t}=`, `${scheme} ${t}==`,
      `${scheme} ${t.slice(0, -1)}`, `${scheme} ${t.slice(0, -2)}`, `${scheme} ${t}A`, `${scheme} ${t}.`, `${scheme} ${t.replace('.', '..')}`, `${scheme} ${t.replace(/\.[^.]*$/, '.')}`,
      `${scheme} ${t}, Basic Zm9vOmJhcg==`, `Basic Zm9vOmJhcg==, ${scheme} ${t}`, `Basic ${Buffer.from(`x:${t}`).toString('base64')}`, `${facts.bound ? 'Bearer' : 'DPoP'} ${t}`,
      `${scheme} ${t.replaceAll('-', '+').replaceAll('_', '/')}`, `${scheme}`, `${scheme} `, t, `Token ${t}`, `${scheme} "${t}"`, `${scheme} ${t}\u0000`,
      `${scheme} ${t.split('.').slice(0, 2).join('.')}.`, `${scheme} ${t.split('.').slice(0, 2).join('.')}`, `${scheme}=${t}`,
    ]), ...(rng.chance(0.15) ? [`${scheme} ${t}`] : [])];
  }

  async function genRequest(rng: Rng, port: number): Promise<{ request: RawRequest; summary: string[] }> {
    const summary: string[] = [];
    const kind = rng.next();
    if (kind < 0.08) {
      // A public route, perhaps dressed up.
      const request: RawRequest = { method: rng.pick(['GET', 'HEAD', 'GET', 'POST', 'OPTIONS']), target: rng.pick([...oracle.publicPaths, ...PATHS]), version: 'HTTP/1.1', headers: [['Host', `127.0.0.1:${port}`]], body: Buffer.alloc(0), framing: 'none' };
      if (rng.chance(0.3)) {
        request.headers.push(rng.pick(HOSTILE_HEADERS));
        summary.push('hostile header');
      }
      if (rng.chance(0.1)) {
        request.body = Buffer.from('{}');
        request.framing = rng.pick(['length', 'chunked']);
      }
      return { request, summary };
    }
    const endpoint = rng.pick(Object.keys(oracle.endpoints));
    const body = oracle.genBody(rng, oracle.endpoints[endpoint] ?? 'jsonrpc');
    const facts = rng.chance(0.9) ? rng.pick(rng.chance(0.7) ? current.filter((t) => t.valid && t.roles.some((role) => oracle.usefulRoles.includes(role))) : current) : undefined;
    const request: RawRequest = { method: 'POST', target: endpoint, version: 'HTTP/1.1', headers: [['Host', `127.0.0.1:${port}`], ['Content-Type', 'application/json']], body, framing: 'length' };
    if (facts) {
      const proofKey = facts.bound ? boundKey : rng.chance(0.05) ? boundKey : key;
      const signed = await signedHeaders({ key: proofKey, accessToken: facts.token, tokenType: facts.bound ? 'DPoP' : 'Bearer', method: 'POST', url: `http://127.0.0.1:${port}${endpoint}`, body });
      const proof = signed.dpop as string;
      proofs.set(proof, { proof, token: facts.token, htm: 'POST', htu: `http://127.0.0.1:${port}${endpoint}`, htd: body.length > 0 ? sha(body) : '' });
      for (const value of authorizationValues(rng, facts)) request.headers.push(['Authorization', value]);
      if (rng.chance(0.95)) request.headers.push(['DPoP', proof]);
      if (signed['content-digest'] !== undefined && rng.chance(0.95)) request.headers.push(['Content-Digest', signed['content-digest']]);
      if (rng.chance(0.02)) request.headers.push(['DPoP', proof]);
      // A proof replayed, or one made for another body.
      if (rng.chance(0.03) && usedProofs.size > 0) {
        request.headers = request.headers.filter(([name]) => name !== 'DPoP');
        request.headers.push(['DPoP', rng.pick([...usedProofs])]);
        summary.push('replayed proof');
      }
      if (rng.chance(0.03)) {
        request.body = Buffer.from(body.toString('utf8').replace(UUID, '00000000-0000-4000-8000-000000000000'));
        summary.push('body changed after signing');
      }
      summary.push(`token ${facts.valid ? 'valid' : 'invalid'} [${facts.roles.join(',')}]${facts.bound ? ' bound' : ''}`);
    }
    const mutations = rng.chance(0.45) ? 0 : 1 + rng.int(3);
    for (let m = 0; m < mutations; m++) {
      const what = rng.int(10);
      if (what < 3) {
        request.target = rng.pick(PATHS).replace('message', endpoint.slice(1));
        summary.push(`target ${JSON.stringify(request.target)}`);
      } else if (what < 4) {
        request.method = rng.pick(['GET', 'HEAD', 'PUT', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'post', 'POST ', 'TRACE', 'PROPFIND']);
        summary.push(`method ${JSON.stringify(request.method)}`);
      } else if (what < 5) {
        request.framing = rng.pick(['chunked', 'both', 'none', 'short', 'long', 'chunked-bad']);
        summary.push(`framing ${request.framing}`);
      } else if (what < 6) {
        request.version = rng.pick(['HTTP/1.0', 'HTTP/1.1', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1']);
        summary.push(`version ${request.version}`);
      } else if (what < 7) {
        // Header names in other spellings.
        request.headers = request.headers.map(([name, value]) => [rng.chance(0.5) ? name.toUpperCase() : name.toLowerCase(), value]);
        if (rng.chance(0.3)) request.headers.reverse();
        summary.push('header case/order');
      } else if (what < 8 && request.headers.length > 2) {
        const dropped = request.headers.splice(rng.int(request.headers.length), 1)[0];
        summary.push(`dropped ${dropped?.[0]}`);
      } else {
        const header = rng.pick(HOSTILE_HEADERS);
        request.headers.splice(rng.int(request.headers.length + 1), 0, header);
        summary.push(`header ${JSON.stringify(header).slice(0, 80)}`);
      }
    }
    return { request, summary };
  }

  async function genCase(rng: Rng, port: number): Promise<Case> {
    const first = await genRequest(rng, port);
    const requests = [first];
    // Sometimes a second request on the same connection, glued to the first.
    if (rng.chance(0.12)) requests.push(await genRequest(rng, port));
    const payload = Buffer.concat(requests.map(({ request }) => serialise(request)));
    const text = payload.toString('latin1');
    for (const { request } of requests) {
      for (const [name, value] of request.headers) if (name.toLowerCase() === 'dpop' && proofs.has(value)) proofPayloads.set(value, [...(proofPayloads.get(value) ?? []), text]);
    }
    const description = requests.map(({ request, summary }) => `${request.method} ${request.target} ${request.framing} ${summary.join('; ')}`).join(' || ');
    return { description, payload, headAnswers: requests.map(({ request }) => request.method === 'HEAD') };
  }

  /** The oracle: why this forwarded request should not have reached the upstream, or undefined. */
  function forwardedProblem(recorded: RecordedRequest): string | undefined {
    const headers = recorded.headers;
    const owned = new Set(['x-ca-a2a-request-id', 'x-ca-a2a-subject', 'x-ca-a2a-client-id', 'x-ca-a2a-roles']);
    for (const name of Object.keys(headers)) {
      const dashed = name.toLowerCase().replaceAll('_', '-');
      if (dashed.startsWith('x-ca-a2a-') && !(owned.has(name) && name === dashed)) return `client header ${name} forwarded`;
      if (['authorization', 'dpop', 'proxy-authorization', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', 'expect', 'upgrade', 'te'].includes(name.replaceAll('_', '-'))) return `header ${name} forwarded`;
      // The body is checked as the bytes that came: none may say it is to be decoded.
      if (name === 'content-encoding' && recorded.method === 'POST') return 'content-encoding forwarded with a body';
    }
    for (const name of owned) if (Array.isArray(headers[name]) || String(headers[name] ?? '').includes(',') && name !== 'x-ca-a2a-roles') return `${name} repeated: ${String(headers[name])}`;
    const queryAt = recorded.url.indexOf('?');
    const path = queryAt === -1 ? recorded.url : recorded.url.slice(0, queryAt);
    if (recorded.method === 'GET' || recorded.method === 'HEAD') {
      if (!oracle.publicPaths.includes(path)) return `${recorded.method} ${recorded.url} is no public route`;
      if (recorded.body.length > 0) return 'public request with a body';
      if (headers['x-ca-a2a-subject'] !== undefined) return 'public request with an identity';
      return undefined;
    }
    if (recorded.method !== 'POST') return `method ${recorded.method}`;
    const kind = oracle.endpoints[path];
    if (kind === undefined || !Object.hasOwn(oracle.endpoints, path)) return `POST to ${recorded.url}`;
    if (queryAt !== -1 && tokenParameter(recorded.url.slice(queryAt + 1))) return `token-like query ${recorded.url}`;
    const type = String(headers['content-type'] ?? '');
    if (!/^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i.test(type)) return `content-type ${type}`;
    const bodyBytes = Buffer.from(recorded.body, 'utf8');
    if (bodyBytes.length > MAX_BODY) return 'body over the limit';
    const digest = sha(bodyBytes);
    // A fresh proof the test made for this very body, sent in this case.
    // Bodies repeat: of the proofs for this body, the one of the token whose subject the sidecar named.
    const candidates = [...proofs.values()].filter((facts) => facts.htd === digest && proofPayloads.has(facts.proof) && !usedProofs.has(facts.proof));
    const proof = candidates.find((facts) => tokens.get(facts.token)?.sub === headers['x-ca-a2a-subject']) ?? candidates[0];
    if (!proof) return 'no unused proof made for this body was sent';
    usedProofs.add(proof.proof);
    if (proof.htm !== 'POST' || proof.htu !== `${h.sidecar.url}${path}`) return 'proof for another request';
    const facts = tokens.get(proof.token);
    if (!facts?.valid) return 'the token is not valid';
    const scheme = facts.bound ? 'DPoP' : 'Bearer';
    const escaped = facts.token.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const alone = new RegExp(`\\r\\nauthorization: *${scheme} +${escaped} *\\r\\n`, 'i');
    if (!(proofPayloads.get(proof.proof) ?? []).some((payload) => alone.test(payload))) return `token not sent as ${scheme} <token> alone`;
    if (headers['x-ca-a2a-subject'] !== facts.sub || headers['x-ca-a2a-client-id'] !== facts.azp || headers['x-ca-a2a-roles'] !== facts.roles.join(',')) return 'identity headers are not the token\'s';
    const digestHeader = headers['content-digest'];
    // A client may name it in Connection (hop-by-hop, dropped); otherwise it is the body's.
    if (bodyBytes.length > 0 && digestHeader !== undefined && digestHeader !== `sha-256=:${createHash('sha256').update(bodyBytes).digest('base64')}:`) return `content-digest ${String(digestHeader)}`;
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bodyBytes);
    } catch {
      return 'body not UTF-8';
    }
    if (text.startsWith('\ufeff')) return 'body starts with a byte order mark';
    const jsonProblem = strictJsonProblem(text);
    if (jsonProblem) return `body not strict JSON: ${jsonProblem}`;
    const value = JSON.parse(text) as unknown;
    if (kind === 'call_tool') {
      const element = callToolElement(value);
      return element === undefined ? `not a /call_tool body: ${text.slice(0, 200)}` : oracle.elementProblem(element, facts.roles);
    }
    const elements = Array.isArray(value) ? value : [value];
    if (elements.length === 0 || elements.length > 20) return `batch of ${elements.length}`;
    for (const element of elements) {
      const why = oracle.elementProblem(element, facts.roles);
      if (why) return why;
    }
    return undefined;
  }

  function answerProblem(response: RawResponse, isHead: boolean, sentTokens: string[]): string | undefined {
    for (const token of sentTokens) {
      const signature = token.slice(token.lastIndexOf('.') + 1, token.lastIndexOf('.') + 41);
      if (signature.length >= 20 && (response.body.includes(signature) || response.head.includes(signature))) return 'answer echoes a token';
    }
    if (isHead || response.status === 0) return undefined;
    let json: { jsonrpc?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown; data?: { reason?: unknown } } };
    try {
      json = JSON.parse(response.body) as typeof json;
    } catch {
      return `answer ${response.status} is not JSON: ${response.body.slice(0, 100)}`;
    }
    if (json.result !== undefined && response.status === 200) return undefined; // the upstream's own answer
    if (json.jsonrpc !== '2.0' || !('id' in json) || typeof json.error?.message !== 'string') return `not a JSON-RPC error: ${response.body.slice(0, 200)}`;
    const reason = String(json.error.data?.reason);
    const row = DOCUMENTED.get(reason);
    if (!row) return `undocumented reason ${reason}`;
    if (reason === 'internal.error') return 'an internal error (a bug, by docs/errors.md)';
    if (row.code !== json.error.code || row.status !== response.status) return `${reason} answered ${response.status} / ${String(json.error.code)}, documented ${row.status} / ${row.code}`;
    return undefined;
  }

  it(`never forwards what it should refuse, never crashes, hangs or echoes a token (seed ${SEED}, ${oracle.cases} cases)`, async () => {
    const rng = new Rng(SEED);
    let checked = 0;
    const checkForwarded = (where: string, payload: string): void => {
      for (const recorded of h.upstream.requests.slice(checked)) {
        checked++;
        stats.forwarded++;
        const problem = forwardedProblem(recorded);
        assert.equal(problem, undefined, `${where}: forwarded although ${problem}\n--- upstream got ---\n${recorded.method} ${recorded.url}\n${JSON.stringify(recorded.headers)}\n${recorded.body.slice(0, 500)}\n--- sent ---\n${payload.slice(0, 3000)}`);
      }
    };
    const port = h.sidecar.port;
    const stats = { forwarded: 0, refused: new Map<string, number>() };
    for (let n = 0; n < oracle.cases; n++) {
      if (n % 40 === 0) await mint();
      const testCase = await genCase(rng, port);
      const where = `${oracle.service} seed ${SEED} case ${n}: ${testCase.description}`;
      const { data, hung } = await exchange(port, testCase.payload, testCase.headAnswers);
      assert.ok(!hung, `${where}: neither answered nor closed within ${DEADLINE_MS} ms`);
      const payload = testCase.payload.toString('latin1');
      const sentTokens = [...tokens.keys()].filter((token) => payload.includes(token.slice(token.lastIndexOf('.') + 1, token.lastIndexOf('.') + 41)));
      const responses = parseResponses(data, testCase.headAnswers);
      if (process.env.FUZZ_TRACE && data.includes('internal.error')) console.log(JSON.stringify(h.audit.events('internal_error').slice(-1)));
      if (process.env.FUZZ_TRACE) console.log(n, testCase.description, responses.map((r) => `${r.status} ${r.body.slice(0, 160)}`));
      for (const [index, response] of responses.entries()) {
        const problem = answerProblem(response, testCase.headAnswers[index] ?? false, sentTokens);
        assert.equal(problem, undefined, `${where}: ${problem}\n--- answer ---\n${response.head}\n\n${response.body.slice(0, 500)}\n--- sent ---\n${payload.slice(0, 3000)}`);
        const reason = /"reason":"([a-z_.]+)"/.exec(response.body)?.[1];
        if (reason) stats.refused.set(reason, (stats.refused.get(reason) ?? 0) + 1);
      }
      checkForwarded(where, payload);
    }
    // Forwards still under way when the last case ended.
    await new Promise((resolve) => setTimeout(resolve, 300));
    checkForwarded(`seed ${SEED} after the last case`, '');
    // Still alive and serving: a valid call goes through.
    await mint();
    const admin = current.find((facts) => facts.valid && !facts.bound && facts.roles.join() === 'admin') as TokenFacts;
    const after = await h.call(oracle.alive.body, { token: admin.token, path: oracle.alive.path });
    assert.equal(after.status, 200, `seed ${SEED}: the sidecar no longer serves`);
    if (process.env.FUZZ_STATS) console.log(stats.forwarded, [...stats.refused].sort());
    // The campaign reached the upstream and every layer: a seed that does not is no campaign.
    assert.ok(stats.forwarded > oracle.cases / 40, `seed ${SEED}: only ${stats.forwarded} forwarded`);
    for (const reason of oracle.reached) {
      assert.ok((stats.refused.get(reason) ?? 0) > 0, `seed ${SEED}: no case was refused as ${reason}`);
    }
  });
});
}

campaign(ARCHIVIST);
campaign(MCP);
