import type { DocumentRecord, ListedDocument } from '../shared/documents.js';
import { isEgressError, type EgressClient } from '../shared/egress-client.js';
import { AgentError } from '../shared/rpc-errors.js';

/** Whether a document's current holder has shown no progress for longer than the stale window. */
export function isStale(doc: ListedDocument, staleAfterSeconds: number, now = Date.now()): boolean {
  const since = doc.status === 'processing' ? (doc.claimed_at ?? doc.updated_at) : doc.updated_at;
  return now - Date.parse(since) > staleAfterSeconds * 1000;
}

function conflict(doc: ListedDocument, why: string): AgentError {
  return new AgentError('conflict', `document ${doc.document_id} ${why}`, { current_status: doc.status });
}

/**
 * Takes a document for a pipeline run, moving it to `processing` with a fresh claim. Pending and
 * failed documents are claimed outright; one in flight (processing, extracted, validated) only
 * when its holder went quiet for `staleAfterSeconds`. Each path is one conditional write, so of
 * two workers exactly one wins; the other gets `conflict`, as does one whose read of the document
 * is older than a claim made since.
 */
export async function claimDocument(egress: EgressClient, doc: ListedDocument, staleAfterSeconds: number): Promise<DocumentRecord> {
  try {
    switch (doc.status) {
      case 'pending':
      case 'failed':
        return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id });
      case 'processing':
        if (!isStale(doc, staleAfterSeconds)) throw conflict(doc, `is being processed (claimed at ${doc.claimed_at ?? '?'})`);
        return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id, stale_after_seconds: staleAfterSeconds });
      case 'extracted':
      case 'validated':
        if (!isStale(doc, staleAfterSeconds)) throw conflict(doc, `is being processed (${doc.status} at ${doc.updated_at})`);
        // On the claim it was read under too: re-claimed since (and taken on to the same status),
        // it is another worker's live run, no longer the stale one.
        return await egress.callTool<DocumentRecord>('documents_update', {
          document_id: doc.document_id, expected_status: doc.status, expected_claim_count: doc.claim_count, status: 'processing',
        });
      default:
        throw conflict(doc, `is ${doc.status}`);
    }
  } catch (error) {
    if (isEgressError(error) && error.kind === 'remote' && (error.code === 'conflict' || error.code === 'claim_superseded')) throw conflict(doc, 'was taken by another worker');
    throw error;
  }
}
