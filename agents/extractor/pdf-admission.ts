import type { AgentMetrics } from '../shared/metrics.js';
import { AgentError } from '../shared/rpc-errors.js';

/** PDFs an extractor holds at once, waiting for the reader or being read, unless told otherwise. */
export const DEFAULT_MAX_PDFS = 8;

/**
 * The bound on PDFs an extractor holds: pdf.js reads one PDF at a time (parse-pdf.ts), for up to
 * 20 s each, so without a bound the queue (each entry holding its file) would grow at the request
 * rate. A slot is taken before the object is fetched, so the bytes held are bounded too. A call
 * past the bound is refused at once with `busy`, which the orchestrator's step retry asks again;
 * a call for the same document and claim as one under way (a retry whose first answer was lost,
 * e.g. cut by the sidecar's upstream timeout) joins that one instead of reading the PDF again.
 */
export class PdfSlots {
  readonly #max: number;
  readonly #metrics: Pick<AgentMetrics, 'pdfAdmissions' | 'pdfsHeld'>;
  readonly #held = new Map<string, Promise<unknown>>();

  constructor(max: number, metrics: Pick<AgentMetrics, 'pdfAdmissions' | 'pdfsHeld'>) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`the PDF bound must be an integer of at least 1, not ${max}`);
    this.#max = max;
    this.#metrics = metrics;
  }

  /** Runs `read` in a slot of its own under `key`, or resolves as the read already under `key`. */
  run<T>(key: string, read: () => Promise<T>): Promise<T> {
    const joined = this.#held.get(key);
    if (joined !== undefined) {
      this.#metrics.pdfAdmissions.inc({ admission: 'joined' });
      return joined as Promise<T>;
    }
    if (this.#held.size >= this.#max) {
      this.#metrics.pdfAdmissions.inc({ admission: 'busy' });
      return Promise.reject(new AgentError('busy', `the extractor already holds ${this.#max} PDF(s) to read; ask again shortly`, { max_pdfs: this.#max }));
    }
    const running = read().finally(() => {
      this.#held.delete(key);
      this.#metrics.pdfsHeld.set(this.#held.size);
    });
    this.#held.set(key, running);
    this.#metrics.pdfAdmissions.inc({ admission: 'admitted' });
    this.#metrics.pdfsHeld.set(this.#held.size);
    return running;
  }
}
