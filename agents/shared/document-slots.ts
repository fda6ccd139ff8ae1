import { Slots } from './admission.js';
import type { AgentMetrics } from './metrics.js';

/** Documents a step agent holds at once (the extractor: other than PDFs), unless told otherwise. */
export const DEFAULT_MAX_DOCUMENTS = 8;

/** The agents that read a document's whole object to do their step, and so take a slot for it. */
export type DocumentHolder = 'extractor' | 'validator' | 'archivist';

/**
 * The bound on documents a step agent holds: each step reads the document's whole object through
 * the gateway (the extractor to parse it, the validator to hash it, the archivist to copy it; the
 * extractor's PDFs have a bound of their own, pdf-admission.ts), up to the
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

/** Options of the step agents' handlers. */
export interface DocumentHolderOptions {
  /** Documents held at once (default {@link DEFAULT_MAX_DOCUMENTS}); a step past it answers `busy`. */
  readonly maxDocuments?: number;
}
