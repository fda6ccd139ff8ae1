import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { DocumentRecord } from '../shared/documents.js';
import { isEgressError, type EgressClient, type EgressError, type RetryOptions } from '../shared/egress-client.js';
import { storableText } from '../shared/storable-text.js';
import type { ProcessLog } from './process-log.js';
import { callStep, type BusyRetryOptions } from './step-call.js';

/** One hop of the pipeline: which agent, which method, how to describe its answer in the log. */
interface Step {
  readonly step: 'extract' | 'validate' | 'archive';
  readonly service: 'extractor' | 'validator' | 'archivist';
  readonly method: string;
  readonly describe: (result: Record<string, unknown>) => string;
}

/** The pipeline, in order. Each step's agent moves the document to its next status. */
export const STEPS: readonly Step[] = [
  {
    step: 'extract', service: 'extractor', method: 'extract_document',
    describe: (r) => {
      const counts = [r['page_count'] === undefined ? '' : `${String(r['page_count'])} page(s)`, r['row_count'] === undefined ? '' : `${String(r['row_count'])} row(s)`];
      return [`${String(r['format'])}`, ...counts.filter(Boolean), `${String(r['char_count'])} chars`].join(', ');
    },
  },
  { step: 'validate', service: 'validator', method: 'validate_document', describe: (r) => `score ${String(r['score'])}` },
  { step: 'archive', service: 'archivist', method: 'archive_document', describe: (r) => `archived as ${String(r['archive_key'])}` },
];

/**
 * How a run ended: `failed_unrecorded` is a failure the run could not write to the document: the
 * gateway unreachable (the document stays in flight until the stale sweep retakes it), or the
 * document deleted or moved on meanwhile. `deferred`: a step's agent stayed busy for the whole
 * busy wait, or while the step had time (its deadline), or the step had no time left to start;
 * the document is left in flight, unfailed, for the stale sweep to retake.
 */
export interface PipelineOutcome {
  readonly status: 'archived' | 'failed' | 'failed_unrecorded' | 'interrupted' | 'deferred';
  readonly error?: string;
  readonly failed_step?: string;
  readonly validation_score?: number;
  readonly archive_key?: string;
}

/** The claim a run holds: its document and the `claim_count` the claim gave it. */
export type RunClaim = Pick<DocumentRecord, 'document_id' | 'claim_count'>;

/** What a run needs. */
export interface PipelineDeps {
  readonly egress: EgressClient;
  readonly log: ProcessLog;
  readonly logger: Logger;
  readonly retry: RetryOptions;
  readonly busyRetry: BusyRetryOptions;
  /**
   * How long a step may go on, its attempts, busy waits and backoffs included, from the run's
   * last progress (its claim, or the answer of the step before, whose write restarted the stale
   * clock): the stale window less a margin (orchestrator.ts); Infinity for none.
   */
  readonly stepWindowMs: number;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether a write was refused because the document was claimed again since this run's claim. */
function isClaimSuperseded(error: unknown): error is EgressError {
  return isEgressError(error) && error.kind === 'remote' && error.code === 'claim_superseded';
}

/** What became of a failure this run tried to record. */
type MarkFailedResult = { readonly outcome: 'recorded' | 'not_recorded' } | { readonly outcome: 'taken_over'; readonly current_claim_count: unknown };

/** What becomes of a document whose failure this run could not record, for the log line. */
function notRecordedBecause(error: unknown): string {
  if (isEgressError(error) && error.kind === 'remote' && error.code === 'not_found') {
    return 'could not record the failure: the document was deleted meanwhile; nothing is left to retake';
  }
  if (isEgressError(error) && error.kind === 'remote' && error.code === 'conflict') {
    // Not in flight any more (archived, failed or pending again): the stale sweep does not take it.
    const now = typeof error.data?.['current_status'] === 'string' ? error.data['current_status'] : 'no longer in flight';
    return `could not record the failure: the document is ${now} now, moved on by another worker; the stale sweep leaves it`;
  }
  return 'could not record the failure; the stale sweep will retake the document';
}

/**
 * Records a failure on the document. Conditional on a non-final status, so a document that another
 * worker archived meanwhile is not turned into a failure, and on the claim this run holds, so a run
 * that another worker took over (its claim went stale) does not fail the run that took over.
 */
async function markFailed(deps: PipelineDeps, claim: RunClaim, reason: string): Promise<MarkFailedResult> {
  try {
    await deps.egress.callTool('documents_update', {
      document_id: claim.document_id, expected_status: ['processing', 'extracted', 'validated'], status: 'failed', error: storableText(reason, 2000),
      expected_claim_count: claim.claim_count,
    });
    return { outcome: 'recorded' };
  } catch (error) {
    if (isClaimSuperseded(error)) return { outcome: 'taken_over', current_claim_count: error.data?.['current_claim_count'] };
    deps.logger.error({ event_type: 'mark_failed_failed', document_id: claim.document_id, err: reasonOf(error) }, notRecordedBecause(error));
    return { outcome: 'not_recorded' };
  }
}

/** The document's claim_count now, for the log of a run taken over; null when it cannot be read. */
async function currentClaimCount(deps: PipelineDeps, documentId: string): Promise<number | null> {
  try {
    return (await deps.egress.callTool<DocumentRecord>('documents_get', { document_id: documentId })).claim_count;
  } catch {
    return null;
  }
}

/**
 * Runs extract → validate → archive on a document this worker has claimed (status processing).
 * Each step is called with the run's claim_count, so the step agent writes only while this run's
 * claim is the document's current one. Every step is logged; the first failure ends the run with
 * the document `failed` and its reason, unless another worker has claimed the document since: then
 * the run is `interrupted`, writes nothing more and leaves the document to the run that took it over.
 * `claimedAt` is when the claim was taken, on performance.now()'s clock: the first step's deadline
 * runs from it, each next one's from the answer of the step before.
 */
export async function runPipeline(deps: PipelineDeps, claim: RunClaim, claimedAt: number): Promise<PipelineOutcome> {
  const documentId = claim.document_id;
  let score: number | undefined;
  let progressAt = claimedAt;
  const takenOver = async (step: Step, currentClaimCount: unknown, logMessage: string, reason: string): Promise<PipelineOutcome> => {
    deps.logger.warn({
      event_type: 'run_taken_over', document_id: documentId, step: step.step, run_claim_count: claim.claim_count, current_claim_count: currentClaimCount,
    }, 'another worker took the document over; this run records nothing more');
    await deps.log(documentId, step.step, 'skipped', logMessage);
    return { status: 'interrupted', failed_step: step.step, error: reason };
  };
  const failed = async (step: Step, reason: string, recorded: boolean): Promise<PipelineOutcome> => {
    const marked = recorded ? undefined : await markFailed(deps, claim, reason);
    if (marked?.outcome === 'taken_over') {
      return takenOver(step, marked.current_claim_count, `another worker took the document over; not recorded as failed: ${reason}`, reason);
    }
    await deps.log(documentId, step.step, 'failed', reason);
    const status = marked?.outcome === 'not_recorded' ? 'failed_unrecorded' : 'failed';
    return { status, failed_step: step.step, error: reason, ...(score === undefined ? {} : { validation_score: score }) };
  };
  // Busy is the agents' back-pressure, not the document's fault: failing it would need an operator
  // to process it again. Left as it is, it is retaken by the stale sweep. So is a step that had no
  // time left to start: nothing was asked, and its claim is about to go stale anyway.
  const deferred = async (step: Step, why: string, attempts: number, waitedMs: number, outOfTime: boolean): Promise<PipelineOutcome> => {
    deps.logger.warn({
      event_type: 'step_deferred', document_id: documentId, step: step.step, attempts, waited_ms: Math.round(waitedMs), out_of_time: outOfTime,
    }, 'step agent still busy or out of time; the document is left in flight for the stale sweep');
    await deps.log(documentId, step.step, 'skipped', `${why}: left in flight for the stale sweep to retake`);
    return { status: 'deferred', failed_step: step.step, error: `${step.step}: ${why}`, ...(score === undefined ? {} : { validation_score: score }) };
  };
  for (const step of STEPS) {
    const deadline = progressAt + deps.stepWindowMs;
    await deps.log(documentId, step.step, 'started');
    let result: unknown;
    try {
      const answer = await callStep(deps.egress, deps.retry, deps.busyRetry, deadline, step.service, step.method, { document_id: documentId, claim_count: claim.claim_count });
      if ('notAsked' in answer) return deferred(step, `no time left to ask ${step.service} before the claim would go stale`, 0, 0, true);
      if ('busy' in answer) {
        const cut = answer.outOfTime ? ', no time for another ask before the claim would go stale' : '';
        return deferred(step, `${step.service} busy for ${(answer.waitedMs / 1000).toFixed(1)} s (${answer.attempts} attempt(s))${cut}`, answer.attempts, answer.waitedMs, answer.outOfTime);
      }
      // A hop that keeps failing is the step's failure, as when its attempts run out: the deadline
      // only leaves it fewer. Deferred instead, it would be retaken and cut again every window,
      // and never show as failed.
      if ('unreachable' in answer) {
        const cut = answer.outOfTime ? ', all the time before the claim would go stale allowed' : '';
        return failed(step, `${step.step}: ${step.service} unreachable after ${answer.attempts} attempt(s)${cut} (${reasonOf(answer.unreachable)})`, false);
      }
      result = answer.result;
      progressAt = performance.now();
    } catch (error) {
      // claim_superseded: the step agent found the document claimed again and wrote nothing.
      if (isClaimSuperseded(error)) {
        return takenOver(step, error.data?.['current_claim_count'], `another worker took the document over; ${step.step} not recorded: ${reasonOf(error)}`, `${step.step}: ${reasonOf(error)}`);
      }
      // conflict: someone else moved the document on (a sweep took it over); theirs is the run now.
      // A conflict carries no claim count: the document says which claim holds it now.
      if (isEgressError(error) && error.kind === 'remote' && error.code === 'conflict') {
        return takenOver(step, await currentClaimCount(deps, documentId), `another worker holds the document: ${reasonOf(error)}`, reasonOf(error));
      }
      return failed(step, `${step.step}: ${reasonOf(error)}`, false);
    }
    // Every agent answers an object; anything else is a broken hop, not a result to read fields of.
    if (typeof result !== 'object' || result === null || Array.isArray(result)) {
      return failed(step, `${step.step}: ${step.service} answered a result that is not an object`, false);
    }
    const answer = result as Record<string, unknown>;
    if (typeof answer['score'] === 'number') score = answer['score'];
    // The validator records a rejection itself (status failed, with the rules that failed), under
    // this run's claim: a run taken over meanwhile gets claim_superseded above instead. Any other
    // step saying failed has recorded nothing: the run records it.
    if (answer['status'] === 'failed') return failed(step, String(answer['error'] ?? `${step.step} rejected the document`), step.step === 'validate');
    await deps.log(documentId, step.step, 'succeeded', step.describe(answer));
    if (step.step === 'archive') {
      return { status: 'archived', archive_key: String(answer['archive_key']), ...(score === undefined ? {} : { validation_score: score }) };
    }
  }
  return { status: 'failed', error: 'pipeline ended without archiving' };
}
