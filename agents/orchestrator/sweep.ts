import type { DocumentPage, DocumentRecord } from '../shared/documents.js';
import type { EgressClient } from '../shared/egress-client.js';
import { claimDocument, isStale } from './claim.js';

/** Most documents one sweep takes over; the next sweep takes the rest. */
const SWEEP_BATCH = 10;

/**
 * Finds documents whose pipeline run stopped (the orchestrator died, a step hung) and claims them
 * again. Stuck in `processing`: the gateway's documents_claim_stale re-claims them atomically.
 * Stuck between steps (`extracted`, `validated`): one conditional update each moves them back to
 * `processing`. Resolves the documents this worker now holds.
 */
export async function claimStale(egress: EgressClient, staleAfterSeconds: number): Promise<DocumentRecord[]> {
  const { documents } = await egress.callTool<{ documents: DocumentRecord[] }>('documents_claim_stale', {
    older_than_seconds: staleAfterSeconds, limit: SWEEP_BATCH,
  });
  const taken = [...documents];
  for (const status of ['extracted', 'validated'] as const) {
    const page = await egress.callTool<DocumentPage>('documents_list', { status, limit: SWEEP_BATCH });
    for (const doc of page.documents.filter((d) => isStale(d, staleAfterSeconds))) {
      try {
        taken.push(await claimDocument(egress, doc, staleAfterSeconds));
      } catch (error) {
        // Another worker was faster; it owns the document now.
        if ((error as { code?: unknown }).code !== 'conflict') throw error;
      }
    }
  }
  return taken;
}
