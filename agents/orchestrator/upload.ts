import { randomUUID } from 'node:crypto';
import { documentSummary, type DocumentRecord } from '../shared/documents.js';
import type { EgressClient } from '../shared/egress-client.js';
import { AgentError } from '../shared/rpc-errors.js';
import type { ProcessLog } from './process-log.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A file name safe as the last segment of an object key (the original name stays on the row). */
export function keySafeName(filename: string): string {
  const safe = filename.normalize('NFC').replace(/[^\p{L}\p{N}._-]+/gu, '_').slice(0, 200);
  return /^\.*$/.test(safe) ? 'file' : safe;
}

/** What upload_document receives (its schema is policies/schemas/upload-document.json). */
export interface UploadParams {
  readonly filename: string;
  readonly content_type: string;
  readonly content_base64: string;
}

/**
 * Stores the file under uploads/<document_id>/ and records it pending. The object goes first:
 * if recording fails, an unreferenced object is left rather than a row pointing at nothing.
 */
export async function uploadDocument(egress: EgressClient, log: ProcessLog, params: UploadParams): Promise<Record<string, unknown>> {
  if (params.content_base64.length % 4 !== 0 || !BASE64.test(params.content_base64)) {
    throw new AgentError('invalid_params', 'content_base64 is not padded base64 (RFC 4648 §4)');
  }
  if (Buffer.from(params.content_base64, 'base64').length === 0) throw new AgentError('invalid_params', 'the file is empty');
  const documentId = randomUUID();
  const key = `uploads/${documentId}/${keySafeName(params.filename)}`;
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
