import { Slots } from './admission.js';
import type { AgentMetrics } from './metrics.js';

/** Documents a validator or an archivist holds at once, unless told otherwise. */
export const DEFAULT_MAX_DOCUMENTS = 8;

/** The agents that read a document's whole object to do their step, and so take a slot for it. */
export type DocumentHolder = 'validator' | 'archivist';

/**
 * The bound on documents a validator or an archivist holds: each step reads the document's whole
 * object through the gateway (the validator to hash it, the archivist to copy it), up to the
 * gateway's largest object, 10 MiB by default, held as the answer's text, its base64 string and
 * the bytes or the copy's request body. Without a bound those copies grow with the request rate.
 * A call past it answers `busy` with `max_documents` (agents/shared/admission.ts).
 */
export function documentSlots(agent: DocumentHolder, max: number, metrics: Pick<AgentMetrics, 'documentAdmissions' | 'documentsHeld'>): Slots {
  return new Slots({
    max, holding: `the ${agent} already holds {max} document(s)`, boundKey: 'max_documents',
    counted: (admission) => metrics.documentAdmissions.inc({ admission }),
    held: (count) => metrics.documentsHeld.set(count),
  });
}

/** Options of the validator's and the archivist's handlers. */
export interface DocumentHolderOptions {
  /** Documents held at once (default {@link DEFAULT_MAX_DOCUMENTS}); a step past it answers `busy`. */
  readonly maxDocuments?: number;
}
