import { AgentError } from './rpc-errors.js';

/** How a call was admitted to a bounded set of slots (a bounded metric label). */
export type Admission = 'admitted' | 'joined' | 'busy';

/**
 * The wait a `busy` answer asks for, in `data.retry_after_seconds`: a slot frees as soon as one
 * document's step ends, which takes about a second for most files (a PDF read up to 20 s).
 */
export const BUSY_RETRY_AFTER_SECONDS = 1;

/** Options of {@link Slots}. */
export interface SlotsOptions {
  readonly max: number;
  /** What is held, for the busy message: "the extractor already holds 8 PDF(s) to read". */
  readonly holding: string;
  /** The `data` key naming the bound in a busy answer, e.g. `max_pdfs`. */
  readonly boundKey: string;
  readonly counted: (admission: Admission) => void;
  readonly held: (count: number) => void;
}

/**
 * A bound on the documents an agent holds at once: a step past it is refused at once with `busy`
 * (nothing read, nothing written), which the orchestrator asks again; a call with the key of one
 * under way (the same document and claim: a retry whose first answer was lost, e.g. cut by the
 * sidecar's upstream timeout) joins that one instead of reading the document again. A slot is
 * taken before the document's object is fetched, so the bytes held are bounded too: the bound
 * times the gateway's largest object (CA_A2A_S3_MAX_OBJECT_BYTES), a few copies each.
 */
export class Slots {
  readonly #opts: SlotsOptions;
  readonly #held = new Map<string, Promise<unknown>>();

  constructor(opts: SlotsOptions) {
    if (!Number.isInteger(opts.max) || opts.max < 1) throw new Error(`the bound on ${opts.boundKey} must be an integer of at least 1, not ${opts.max}`);
    this.#opts = opts;
  }

  /** Runs `work` in a slot of its own under `key`, or resolves as the work already under `key`. */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const { max, counted, held } = this.#opts;
    const joined = this.#held.get(key);
    if (joined !== undefined) {
      counted('joined');
      return joined as Promise<T>;
    }
    if (this.#held.size >= max) {
      counted('busy');
      return Promise.reject(new AgentError('busy', `${this.#opts.holding.replace('{max}', String(max))}; ask again shortly`, {
        [this.#opts.boundKey]: max, retry_after_seconds: BUSY_RETRY_AFTER_SECONDS,
      }));
    }
    const running = work().finally(() => {
      this.#held.delete(key);
      held(this.#held.size);
    });
    this.#held.set(key, running);
    counted('admitted');
    held(this.#held.size);
    return running;
  }
}

/** The key of a step's slot: its document and the claim it runs under. */
export function stepKey(documentId: string, claimCount: number | undefined): string {
  return `${documentId}#${claimCount ?? 'unfenced'}`;
}
