import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { documentSummary, type DocumentPage, type DocumentRecord } from '../shared/documents.js';
import { asAgentError, DEFAULT_RETRY, type EgressClient, type RetryOptions } from '../shared/egress-client.js';
import type { MethodHandler } from '../shared/jsonrpc-server.js';
import { claimDocument } from './claim.js';
import { runPipeline, type PipelineDeps, type PipelineOutcome, type RunClaim } from './pipeline.js';
import { processLog } from './process-log.js';
import { DEFAULT_BUSY_RETRY, type BusyRetryOptions } from './step-call.js';
import { claimStale, DEFAULT_SWEEP_BATCH } from './sweep.js';
import { uploadDocument, type UploadParams } from './upload.js';

/** A run that showed no progress for this long is taken over, unless told otherwise. */
export const DEFAULT_STALE_AFTER_SECONDS = 120;
/** How often the stale sweep runs, unless told otherwise. */
export const DEFAULT_SWEEP_INTERVAL_MS = 30_000;

/**
 * The share of the stale window a step may take, from the run's last progress as the orchestrator
 * learned it (the claim's answer, the step before's). The tenth kept back (12 s of the default 120 s)
 * covers what the orchestrator's clock does not see: the way back of the answer that carried the
 * progress, written before it was sent, and, when the deadline cuts a step, recording the outcome
 * (one documents_update) before another orchestrator may take the document over. Each of these is
 * a round trip through two sidecars, milliseconds on a healthy stack: a tenth leaves room for a slow
 * one, and shrinks with the window a test sets short.
 */
export const STEP_SHARE_OF_STALE_WINDOW = 0.9;

/** Options of {@link createOrchestrator}. */
export interface OrchestratorOptions {
  readonly egress: EgressClient;
  readonly logger: Logger;
  /** A run that showed no progress for this long is taken over (default {@link DEFAULT_STALE_AFTER_SECONDS}). */
  readonly staleAfterSeconds?: number;
  /** How often the stale sweep runs; 0 turns the timer off (default {@link DEFAULT_SWEEP_INTERVAL_MS}). */
  readonly sweepIntervalMs?: number;
  /** Most documents one sweep takes over, a whole number of at least 1 (default {@link DEFAULT_SWEEP_BATCH}). */
  readonly sweepBatch?: number;
  /** Attempts and backoff of a step whose hop failed (default {@link DEFAULT_RETRY}). */
  readonly retry?: RetryOptions;
  /**
   * How long a step waits for a busy agent before the run defers the document to the sweep
   * (default {@link DEFAULT_BUSY_RETRY}, its wait at most a quarter of the stale window); the
   * wait must be below the stale window.
   */
  readonly busyRetry?: BusyRetryOptions;
  /** Called as each run ends (the agent's metrics count them). */
  readonly onRunFinished?: (outcome: PipelineOutcome, trigger: RunTrigger) => void;
}

/** What started a run: a process_document call, or the stale sweep taking an abandoned one over. */
export type RunTrigger = 'process_document' | 'sweep';

/** The orchestrator: its methods, and the sweep that finishes abandoned runs. */
export interface Orchestrator {
  readonly handlers: Record<string, MethodHandler>;
  /** The settings in effect, defaults included, for the agent's start line. */
  readonly settings: Readonly<Record<string, number>>;
  /** Takes over stale documents and runs their pipeline; resolves the outcome per document. */
  sweep(): Promise<Record<string, PipelineOutcome>>;
  /** Stops the sweep timer; a sweep under way claims no more documents after the run it is in. */
  close(): void;
}

const NOT_ARCHIVED = ['pending', 'processing', 'extracted', 'validated', 'failed'] as const;
const DEFAULT_PAGE = 20;
/** Processing-log entries check_status shows, oldest first (the gateway lists them in that order). */
const STATUS_LOGS = 200;

/**
 * The summary of a document as its run left it, for when it cannot be read afterwards: the fixed
 * fields from the claim, the state from the run. Only an archived run and a failure it recorded
 * know the document's status; any other outcome leaves it null (check_status reads it later).
 */
function runSummary(claimed: DocumentRecord, outcome: PipelineOutcome): Record<string, unknown> {
  const known = outcome.status === 'archived' || outcome.status === 'failed';
  return {
    ...documentSummary(claimed),
    status: known ? outcome.status : null,
    validation_score: outcome.validation_score ?? null,
    error: outcome.error ?? null,
    archive_key: outcome.archive_key ?? null,
    updated_at: null,
  };
}

async function guarded<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw asAgentError(error);
  }
}

/** Creates the orchestrator and starts its sweep timer. */
export function createOrchestrator(opts: OrchestratorOptions): Orchestrator {
  const { egress, logger } = opts;
  const staleAfter = opts.staleAfterSeconds ?? DEFAULT_STALE_AFTER_SECONDS;
  const retry = opts.retry ?? DEFAULT_RETRY;
  const sweepBatch = opts.sweepBatch ?? DEFAULT_SWEEP_BATCH;
  // Below 1 the sweep would take nothing over and stalled runs would wait for a process_document.
  if (!Number.isInteger(sweepBatch) || sweepBatch < 1) throw new Error(`the sweep batch must be a whole number of at least 1, not ${sweepBatch}`);
  // By default at most a quarter of the stale window: a short window set alone still holds.
  const busyRetry = opts.busyRetry ?? { ...DEFAULT_BUSY_RETRY, maxWaitMs: Math.min(DEFAULT_BUSY_RETRY.maxWaitMs, staleAfter * 250) };
  // A run waiting on a busy agent shows no progress: past the stale window it would be taken over
  // (a zero window, which tests use to take runs over at once, allows only no wait at all).
  if (busyRetry.maxWaitMs > 0 && !(busyRetry.maxWaitMs < staleAfter * 1000)) {
    throw new Error(`the busy wait (${busyRetry.maxWaitMs} ms) must be below the stale window (${staleAfter} s)`);
  }
  const log = processLog(egress, logger);
  // A zero window (tests: every run in flight is taken over at once) leaves a step no time at
  // all: it sets no deadline instead.
  const stepWindowMs = staleAfter > 0 ? staleAfter * 1000 * STEP_SHARE_OF_STALE_WINDOW : Infinity;
  const deps: PipelineDeps = { egress, log, logger, retry, busyRetry, stepWindowMs };

  // Called as soon as the claim is taken: the first step's deadline runs from here.
  const run = async (doc: RunClaim, trigger: RunTrigger, how: string): Promise<PipelineOutcome> => {
    const claimedAt = performance.now();
    await log(doc.document_id, 'claim', 'info', `${how} (claim ${doc.claim_count})`);
    const outcome = await runPipeline(deps, doc, claimedAt);
    logger.info({ event_type: 'pipeline_finished', document_id: doc.document_id, status: outcome.status, failed_step: outcome.failed_step, trigger }, 'pipeline finished');
    opts.onRunFinished?.(outcome, trigger);
    return outcome;
  };

  let sweeping: Promise<Record<string, PipelineOutcome>> | undefined;
  // Once closed, a sweep under way finishes the run it started and claims nothing more.
  let closed = false;
  const sweep = (): Promise<Record<string, PipelineOutcome>> => {
    if (closed) return Promise.resolve({});
    // One sweep at a time: a slow one must not be joined by the next tick.
    sweeping ??= (async () => {
      const outcomes: Record<string, PipelineOutcome> = {};
      try {
        for (let taken = 0; taken < sweepBatch && !closed; taken++) {
          const doc = await claimStale(egress, staleAfter);
          if (doc === undefined) break;
          const outcome = await run(doc, 'sweep', 'stale run taken over by the sweep');
          outcomes[doc.document_id] = outcome;
          // A step agent stayed busy: the next stalled document would wait on it too, and be
          // claimed again for nothing. The next tick goes on.
          if (outcome.status === 'deferred') break;
        }
      } catch (error) {
        logger.warn({ event_type: 'sweep_failed', err: (error as Error).message }, 'stale sweep failed; next tick retries');
      } finally {
        sweeping = undefined;
      }
      return outcomes;
    })();
    return sweeping;
  };
  const interval = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  const timer = interval > 0 ? setInterval(() => void sweep(), interval) : undefined;
  timer?.unref();

  const handlers: Record<string, MethodHandler> = {
    upload_document: (params, caller) => guarded(() => uploadDocument(egress, log, params as unknown as UploadParams, caller)),
    process_document: (params) => guarded(async () => {
      const documentId = params['document_id'] as string;
      const doc = await egress.callTool<DocumentRecord>('documents_get', { document_id: documentId });
      // Processing an archived document again changes nothing: one archive entry, same answer.
      if (doc.status === 'archived') return { ...documentSummary(doc), reused: true };
      const claimed = await claimDocument(egress, doc, staleAfter);
      const outcome = await run(claimed, 'process_document', doc.status === 'pending' ? 'claimed' : `claimed again from ${doc.status}`);
      const ran = { reused: false, run_outcome: outcome.status, ...(outcome.failed_step === undefined ? {} : { failed_step: outcome.failed_step }) };
      let final: DocumentRecord;
      try {
        final = await egress.callTool<DocumentRecord>('documents_get', { document_id: documentId });
      } catch (error) {
        // The run is over and its outcome known: a failed read afterwards must not hide it.
        logger.warn({ event_type: 'final_read_failed', document_id: documentId, run_outcome: outcome.status, err: (error as Error).message }, 'could not read the document after its run; answering the run outcome');
        return { ...runSummary(claimed, outcome), ...ran, final_read_failed: true, final_read_error: (error as Error).message };
      }
      // status is the document's now, whoever holds it; run_outcome is how this call's own run ended.
      return { ...documentSummary(final), ...ran };
    }),
    check_status: (params) => guarded(async () => {
      const documentId = params['document_id'] as string;
      // The latest entries, one more than is shown: a full page says whether earlier ones were left out.
      const [doc, logs] = await Promise.all([
        egress.callTool<DocumentRecord>('documents_get', { document_id: documentId }),
        egress.callTool<{ entries: Record<string, unknown>[] }>('processing_logs_list', { document_id: documentId, limit: STATUS_LOGS + 1, order: 'newest_first' }),
      ]);
      return {
        ...documentSummary(doc), claim_count: doc.claim_count, claimed_at: doc.claimed_at,
        // Shown oldest first, as the log reads.
        logs: logs.entries.slice(0, STATUS_LOGS).reverse().map(({ document_id: _id, ...entry }) => entry),
        ...(logs.entries.length > STATUS_LOGS ? { logs_truncated: true } : {}),
      };
    }),
    list_pending_documents: (params) => guarded(async () => {
      const limit = (params['limit'] as number | undefined) ?? DEFAULT_PAGE;
      // "Pending" is everything not yet archived, failures included: they need attention.
      const pages = await Promise.all(NOT_ARCHIVED.map((status) => egress.callTool<DocumentPage>('documents_list', { status, limit })));
      const documents = pages.flatMap((page) => page.documents)
        .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.document_id.localeCompare(b.document_id))
        .slice(0, limit);
      return { documents: documents.map(documentSummary) };
    }),
  };
  return {
    handlers,
    settings: {
      stale_after_seconds: staleAfter, sweep_interval_seconds: interval / 1000, sweep_batch: sweepBatch, step_attempts: retry.attempts, busy_wait_seconds: busyRetry.maxWaitMs / 1000,
    },
    sweep,
    close: () => {
      closed = true;
      clearInterval(timer);
    },
  };
}
