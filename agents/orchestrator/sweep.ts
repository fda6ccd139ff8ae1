import type { ListedDocument } from '../shared/documents.js';
import type { EgressClient } from '../shared/egress-client.js';

/** Most documents one sweep takes over, unless told otherwise; the next sweep takes the rest, longest stalled first. */
export const DEFAULT_SWEEP_BATCH = 10;

/**
 * Finds the document whose pipeline run has been stopped longest (the orchestrator died, a step
 * hung) and claims it again, in one atomic call to the gateway (documents_claim_stale): stuck in
 * `processing` since its claim, or between steps (`extracted`, `validated`) since its last change.
 * The gateway picks among every document, so live runs, however many, never hide a stalled one.
 * One at a time, as its run is about to start: a claim taken for a document still waiting behind
 * other runs would age, and past the stale window another sweep (another replica's) would take it
 * over from under this one. Resolves the document this worker now holds (as documents_list
 * answers it, without its extracted content), or undefined when none has stalled.
 */
export async function claimStale(egress: EgressClient, staleAfterSeconds: number): Promise<ListedDocument | undefined> {
  const { documents } = await egress.callTool<{ documents: ListedDocument[] }>('documents_claim_stale', {
    older_than_seconds: staleAfterSeconds, limit: 1,
  });
  return documents[0];
}
