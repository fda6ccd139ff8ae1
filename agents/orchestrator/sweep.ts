import type { DocumentRecord } from '../shared/documents.js';
import type { EgressClient } from '../shared/egress-client.js';

/** Most documents one sweep takes over; the next sweep takes the rest, longest stalled first. */
const SWEEP_BATCH = 10;

/**
 * Finds documents whose pipeline run stopped (the orchestrator died, a step hung) and claims them
 * again, in one atomic call to the gateway (documents_claim_stale): stuck in `processing` since
 * their claim, or between steps (`extracted`, `validated`) since their last change. The gateway
 * picks the stalled ones among every document, so live runs, however many, never hide a stalled
 * one. Resolves the documents this worker now holds.
 */
export async function claimStale(egress: EgressClient, staleAfterSeconds: number): Promise<DocumentRecord[]> {
  const { documents } = await egress.callTool<{ documents: DocumentRecord[] }>('documents_claim_stale', {
    older_than_seconds: staleAfterSeconds, limit: SWEEP_BATCH,
  });
  return documents;
}
