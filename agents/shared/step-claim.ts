import type { DocumentRecord, ListedDocument } from './documents.js';
import { isEgressError, type EgressClient } from './egress-client.js';
import { AgentError } from './rpc-errors.js';

/**
 * The claim a pipeline step works under: the `claim_count` the orchestrator's run got when it
 * claimed the document. A step called without one (an operator, an older orchestrator) is fenced
 * on the document's status alone.
 */
export interface StepClaim {
  readonly documentId: string;
  readonly claimCount: number | undefined;
}

/** The document and claim of a step's params (already checked against document-step.json). */
export function stepClaim(params: Record<string, unknown>): StepClaim {
  const claimCount = params['claim_count'];
  return { documentId: params['document_id'] as string, claimCount: typeof claimCount === 'number' ? claimCount : undefined };
}

/**
 * Refuses a step whose run was taken over (the document was claimed again since), before it reads
 * or writes anything more: the run that took over owns the document now. Same data as the
 * gateway's claim_superseded, which fences the write itself against a claim made meanwhile.
 */
export function assertClaimCurrent(claim: StepClaim, doc: Pick<ListedDocument, 'status' | 'claim_count'>): void {
  if (claim.claimCount === undefined || claim.claimCount === doc.claim_count) return;
  throw new AgentError('claim_superseded', `document ${claim.documentId} was claimed again (claim ${doc.claim_count}, expected ${claim.claimCount})`, {
    current_claim_count: doc.claim_count, current_status: doc.status,
  });
}

/** The fence a step adds to its documents_update: the write applies only under the caller's claim. */
export function claimFence(claim: StepClaim): { expected_claim_count?: number } {
  return claim.claimCount === undefined ? {} : { expected_claim_count: claim.claimCount };
}

/**
 * Makes a step's final write. A `conflict` there, under the caller's claim, means another call of
 * the same step wrote first: the orchestrator asks again when an answer is lost (a hop cut, a
 * timeout) while the first call still runs, and both read the document before either wrote. The
 * step then answers what that call recorded, as it does for a repeat that comes after the write,
 * rather than a conflict the run would take for another worker moving the document on.
 */
export async function writeOrRecorded<T>(egress: EgressClient, claim: StepClaim, write: () => Promise<T>, recorded: (doc: DocumentRecord) => T | undefined): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (!isEgressError(error) || error.kind !== 'remote' || error.code !== 'conflict') throw error;
    const doc = await egress.callTool<DocumentRecord>('documents_get', { document_id: claim.documentId });
    assertClaimCurrent(claim, doc);
    const answer = recorded(doc);
    if (answer === undefined) throw error;
    return answer;
  }
}
