import { createHash, randomUUID } from 'node:crypto';
import { documentSummary, type DocumentRecord } from '../shared/documents.js';
import type { Caller } from '../shared/caller.js';
import { isEgressError, type EgressClient } from '../shared/egress-client.js';
import { AgentError } from '../shared/rpc-errors.js';
import { storableText } from '../shared/storable-text.js';
import type { ProcessLog } from './process-log.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const MAX_KEY_NAME = 200;
const MAX_KEY_EXTENSION = 16;

/**
 * A file name safe as the last segment of an object key (the original name stays on the row):
 * letters, digits, '.', '_' and '-' only (no '/', '%', control or bidi character), never '.' or
 * '..', at most 200 UTF-16 units (600 bytes of UTF-8, well inside S3's 1024 with the prefix). A
 * longer name is cut in its stem, keeping an extension of up to 16 characters, and never between
 * the halves of a surrogate pair: the gateway refuses a key holding a lone one.
 */
export function keySafeName(filename: string): string {
  const safe = filename.normalize('NFC').replace(/[^\p{L}\p{N}._-]+/gu, '_');
  if (/^\.*$/.test(safe)) return 'file';
  if (safe.length <= MAX_KEY_NAME) return safe;
  const dot = safe.lastIndexOf('.');
  const extension = dot > 0 && safe.length - dot <= MAX_KEY_EXTENSION ? safe.slice(dot) : '';
  return `${storableText(safe.slice(0, safe.length - extension.length), MAX_KEY_NAME - extension.length)}${extension}`;
}

/** What upload_document receives (its schema is policies/schemas/upload-document.json). */
export interface UploadParams {
  readonly filename: string;
  readonly content_type: string;
  readonly content_base64: string;
  /** The caller's name for this upload: the same key again (same caller, same file) is the same document. */
  readonly idempotency_key?: string;
}

/**
 * The document id of an upload made with an idempotency key: the same caller and key always give
 * the same id, another caller's same key another id. A UUID of version 8 (RFC 9562 §5.8, a name
 * hashed with SHA-256, as version 5 does with SHA-1).
 */
export function idempotentDocumentId(caller: string, key: string): string {
  // JSON keeps the two apart whatever characters they hold.
  const hash = createHash('sha256').update(JSON.stringify(['ca-a2a upload', caller, key])).digest();
  hash[6] = ((hash[6] as number) & 0x0f) | 0x80;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Stores the file under uploads/<document_id>/ and records it pending. The object goes first:
 * if recording fails, an unreferenced object is left rather than a row pointing at nothing.
 *
 * With an idempotency key (an S3-triggered Lambda is invoked at least once, and a client whose
 * answer was lost sends again), the document id comes from the caller and the key: a repeat of
 * the same file answers the recorded document with `reused: true` and stores nothing more; the
 * same key with another file is a conflict. The object key then holds the file's SHA-256, so two
 * different files racing under one key never overwrite each other's object.
 */
export async function uploadDocument(egress: EgressClient, log: ProcessLog, params: UploadParams, caller: Caller): Promise<Record<string, unknown>> {
  if (params.content_base64.length % 4 !== 0 || !BASE64.test(params.content_base64)) {
    throw new AgentError('invalid_params', 'content_base64 is not padded base64 (RFC 4648 §4)');
  }
  const bytes = Buffer.from(params.content_base64, 'base64');
  if (bytes.length === 0) throw new AgentError('invalid_params', 'the file is empty');
  const idempotent = params.idempotency_key !== undefined;
  if (!idempotent) return store(egress, log, params, randomUUID(), keySafeName(params.filename));

  // Scoped to the verified subject, so one caller can neither reach nor block another's uploads.
  const documentId = idempotentDocumentId(caller.subject ?? caller.clientId ?? '', params.idempotency_key as string);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const recorded = await existing(egress, documentId);
  if (recorded !== undefined) return sameUpload(recorded, params, sha256);
  try {
    return await store(egress, log, params, documentId, `${sha256.slice(0, 16)}-${keySafeName(params.filename)}`);
  } catch (error) {
    // Lost a race with the same key: the winner's document decides, as for a later repeat.
    const winner = isEgressError(error) && error.code === 'conflict' ? await existing(egress, documentId) : undefined;
    if (winner === undefined) throw error;
    return sameUpload(winner, params, sha256);
  }
}

async function store(egress: EgressClient, log: ProcessLog, params: UploadParams, documentId: string, name: string): Promise<Record<string, unknown>> {
  const key = `uploads/${documentId}/${name}`;
  const stored = await egress.callTool<{ size: number; sha256: string }>('s3_put_object', {
    key, content_base64: params.content_base64, content_type: params.content_type,
  });
  const doc = await egress.callTool<DocumentRecord>('documents_create', {
    document_id: documentId, filename: params.filename, content_type: params.content_type,
    s3_key: key, size_bytes: stored.size, sha256: stored.sha256,
  });
  await log(documentId, 'upload', 'succeeded', `${stored.size} bytes, sha256 ${stored.sha256}`);
  return documentSummary(doc);
}

async function existing(egress: EgressClient, documentId: string): Promise<DocumentRecord | undefined> {
  try {
    return await egress.callTool<DocumentRecord>('documents_get', { document_id: documentId });
  } catch (error) {
    if (isEgressError(error) && error.code === 'not_found') return undefined;
    throw error;
  }
}

/** The recorded document when it is this very upload again; a conflict when the key named another file. */
function sameUpload(doc: DocumentRecord, params: UploadParams, sha256: string): Record<string, unknown> {
  if (doc.sha256 !== sha256 || doc.filename !== params.filename || doc.content_type !== params.content_type) {
    throw new AgentError('conflict', 'idempotency_key was already used for another file', { document_id: doc.document_id });
  }
  return { ...documentSummary(doc), reused: true };
}
