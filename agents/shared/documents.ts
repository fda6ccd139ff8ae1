/** The document statuses of the pipeline (the MCP gateway's `documents` table). */
export type DocumentStatus = 'pending' | 'processing' | 'extracted' | 'validated' | 'archived' | 'failed';

/** A document row as the MCP gateway's document tools return it. */
export interface DocumentRecord {
  readonly document_id: string;
  readonly filename: string;
  readonly content_type: string;
  readonly s3_key: string;
  readonly size_bytes: number;
  readonly sha256: string;
  readonly status: DocumentStatus;
  readonly extracted: Record<string, unknown> | null;
  readonly validation: Record<string, unknown> | null;
  readonly error: string | null;
  readonly archive_key: string | null;
  readonly claimed_at: string | null;
  readonly claim_count: number;
  readonly created_at: string;
  readonly updated_at: string;
}

/** An object as `s3_get_object` returns it. */
export interface StoredObject {
  readonly key: string;
  readonly content_base64: string;
  readonly content_type: string;
  readonly size: number;
}

/** A document as `documents_list` lists it: without its extraction (`documents_get` has it). */
export type ListedDocument = Omit<DocumentRecord, 'extracted'>;

/** The listing of `documents_list`. */
export interface DocumentPage {
  readonly documents: ListedDocument[];
  readonly next_cursor?: string;
}

/** The wire form of a document without its (possibly large) extracted content. */
export function documentSummary(doc: ListedDocument): Record<string, unknown> {
  const score = doc.validation?.['score'];
  return {
    document_id: doc.document_id,
    filename: doc.filename,
    content_type: doc.content_type,
    size_bytes: doc.size_bytes,
    sha256: doc.sha256,
    status: doc.status,
    validation_score: typeof score === 'number' ? score : null,
    error: doc.error,
    archive_key: doc.archive_key,
    created_at: doc.created_at,
    updated_at: doc.updated_at,
  };
}
