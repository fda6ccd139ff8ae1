import { Slots } from '../shared/admission.js';
import type { AgentMetrics } from '../shared/metrics.js';

/** PDFs an extractor holds at once, waiting for the reader or being read, unless told otherwise. */
export const DEFAULT_MAX_PDFS = 8;

/**
 * The bound on PDFs an extractor holds: pdf.js reads one PDF at a time (parse-pdf.ts), for up to
 * 20 s each, so without a bound the queue (each entry holding its file) would grow at the request
 * rate. A call past it answers `busy` with `max_pdfs` (agents/shared/admission.ts).
 */
export function pdfSlots(max: number, metrics: Pick<AgentMetrics, 'pdfAdmissions' | 'pdfsHeld'>): Slots {
  return new Slots({
    max, holding: 'the extractor already holds {max} PDF(s) to read', boundKey: 'max_pdfs',
    counted: (admission) => metrics.pdfAdmissions.inc({ admission }),
    held: (count) => metrics.pdfsHeld.set(count),
  });
}
