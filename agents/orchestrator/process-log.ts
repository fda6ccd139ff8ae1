import type { Logger } from 'pino';
import type { EgressClient } from '../shared/egress-client.js';
import { storableText } from '../shared/storable-text.js';

/** A processing-log outcome (the gateway's LOG_STATUSES). */
export type LogStatus = 'started' | 'succeeded' | 'failed' | 'skipped' | 'info';

/**
 * Appends to processing_logs; a log that cannot be written is reported, never fatal to the step.
 * A message quotes agents' errors, which quote documents: it is made storable (no NUL, which the
 * gateway refuses, no lone surrogate) and cut to the gateway's 2000 characters.
 */
export function processLog(egress: EgressClient, logger: Logger) {
  return async (documentId: string, step: string, status: LogStatus, message?: string): Promise<void> => {
    try {
      await egress.callTool('processing_logs_append', {
        document_id: documentId, step, status, ...(message === undefined ? {} : { message: storableText(message, 2000) }),
      });
    } catch (error) {
      logger.warn({ event_type: 'processing_log_failed', document_id: documentId, step, err: (error as Error).message }, 'processing log not written');
    }
  };
}

/** The function {@link processLog} returns. */
export type ProcessLog = ReturnType<typeof processLog>;
