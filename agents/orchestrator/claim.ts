import type { DocumentRecord, ListedDocument } from '../shared/documents.js';
import { isEgressError, type EgressClient } from '../shared/egress-client.js';
import { AgentError } from '../shared/rpc-errors.js';

/** The progress the stale window runs from, as the document was read. */
function lastProgress(doc: ListedDocument): string {
  return doc.status === 'processing' ? `claimed at ${doc.claimed_at ?? '?'}` : `${doc.status} at ${doc.updated_at}`;
}

function conflict(doc: ListedDocument, why: string): AgentError {
  return new AgentError('conflict', `document ${doc.document_id} ${why}`, { current_status: doc.status });
}

/**
 * Takes a document for a pipeline run, moving it to `processing` with a fresh claim. Pending and
 * failed documents are claimed outright; one in flight (processing, extracted, validated) only
 * when its run went quiet for `staleAfterSeconds`. Each path is one conditional write, so of two
 * workers exactly one wins; the other gets `conflict`.
 *
 * A run in flight goes stale by the database's clock alone, as the sweep judges it: documents_claim
 * compares `claimed_at` (in processing) or `updated_at` (between steps) with the database's time,
 * in the statement that takes the document and on the row as it then is. The orchestrator's own
 * clock, compared with timestamps the database wrote, would take a live run over when it runs
 * ahead and refuse a stale one when it runs behind; and its read would miss a write the live run
 * made since (the archivist's claim re-check), which the statement sees.
 */
export async function claimDocument(egress: EgressClient, doc: ListedDocument, staleAfterSeconds: number): Promise<DocumentRecord> {
  try {
    switch (doc.status) {
      case 'pending':
      case 'failed':
        return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id });
      case 'processing':
      case 'extracted':
      case 'validated':
        try {
          return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id, stale_after_seconds: staleAfterSeconds });
        } catch (error) {
          // Not stale by the database's clock, or taken on by its holder or another worker meanwhile.
          if (isEgressError(error) && error.kind === 'remote' && error.code === 'conflict') throw conflict(doc, `is being processed (${lastProgress(doc)})`);
          throw error;
        }
      default:
        throw conflict(doc, `is ${doc.status}`);
    }
  } catch (error) {
    if (isEgressError(error) && error.kind === 'remote' && error.code === 'conflict') throw conflict(doc, 'was taken by another worker');
    throw error;
  }
}
