import type { DocumentRecord, ListedDocument } from '../shared/documents.js';
import { isEgressError, type EgressClient } from '../shared/egress-client.js';
import { AgentError } from '../shared/rpc-errors.js';

/**
 * Whether a document between steps has shown no progress for longer than the stale window, by the
 * orchestrator's clock against the database's timestamp: only for the two statuses whose takeover
 * the gateway cannot yet decide in its statement (see {@link claimDocument}).
 */
function isStaleBetweenSteps(doc: ListedDocument, staleAfterSeconds: number, now = Date.now()): boolean {
  return now - Date.parse(doc.updated_at) > staleAfterSeconds * 1000;
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
 *
 * A claim in `processing` goes stale by the database's clock alone: documents_claim compares
 * `claimed_at` with the database's time in the statement that takes it, as the sweep does. The
 * orchestrator's own clock, compared with timestamps the database wrote, would refuse a stale run
 * when it runs behind. Between steps, documents_update has no such condition yet, so that check is
 * still the orchestrator's.
 */
export async function claimDocument(egress: EgressClient, doc: ListedDocument, staleAfterSeconds: number): Promise<DocumentRecord> {
  try {
    switch (doc.status) {
      case 'pending':
      case 'failed':
        return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id });
      case 'processing':
        try {
          return await egress.callTool<DocumentRecord>('documents_claim', { document_id: doc.document_id, stale_after_seconds: staleAfterSeconds });
        } catch (error) {
          // Not stale by the database's clock, or taken on by its holder or another worker meanwhile.
          if (isEgressError(error) && error.kind === 'remote' && error.code === 'conflict') throw conflict(doc, `is being processed (claimed at ${doc.claimed_at ?? '?'})`);
          throw error;
        }
      case 'extracted':
      case 'validated':
        if (!isStaleBetweenSteps(doc, staleAfterSeconds)) throw conflict(doc, `is being processed (${doc.status} at ${doc.updated_at})`);
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
