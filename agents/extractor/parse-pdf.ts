import { Worker } from 'node:worker_threads';
import { AgentError } from '../shared/rpc-errors.js';
import { storableText } from '../shared/storable-text.js';
import { MAX_PARSER_MESSAGE, type FieldValue, type ParsedContent } from './extraction.js';
import { OVER_MEMORY_EXIT_CODE } from './pdf-memory.js';
import type { PdfReply, PdfRequest } from './pdf-worker.js';
import { fieldsFromText } from './text-fields.js';

const PDF_MAGIC = '%PDF-';
const META_KEYS = ['Title', 'Author', 'Subject', 'Creator', 'Producer', 'CreationDate'] as const;

/** How much one PDF may cost to read. A compressed stream can decode to a thousand times its size. */
export interface PdfLimits {
  /**
   * Memory of the thread that reads the PDF (its JS heap and array buffers, which hold the decoded
   * streams), the reader's own included: not what the rest of the process holds. Default 384 MiB.
   */
  readonly maxMemoryBytes: number;
  /** Time to read it. Default 20 s. */
  readonly timeoutMs: number;
}

export const PDF_LIMITS: PdfLimits = { maxMemoryBytes: 384 * 1024 * 1024, timeoutMs: 20_000 };

/** pdf.js names its exceptions; match on the name (they are not exported as classes we share). */
function pdfFailure(name: string, message: string): AgentError {
  if (name === 'PasswordException') return new AgentError('unsupported_format', 'the PDF is encrypted; only unencrypted PDFs can be read');
  return new AgentError('corrupt_document', `the PDF cannot be read: ${storableText(message, MAX_PARSER_MESSAGE)}`);
}

/** Text layer and info dictionary of a PDF (no OCR: a scanned page yields no text). */
export async function parsePdf(bytes: Buffer, limits: PdfLimits = PDF_LIMITS): Promise<ParsedContent> {
  if (bytes.subarray(0, PDF_MAGIC.length).toString('latin1') !== PDF_MAGIC) {
    throw new AgentError('corrupt_document', 'the file is not a PDF (no %PDF- header)');
  }
  const reply = await reader.read(bytes, limits);
  if (!reply.ok) throw pdfFailure(reply.name, reply.message);
  const metadata: Record<string, FieldValue> = {};
  for (const key of META_KEYS) {
    const value = reply.info[key];
    if (typeof value === 'string' && value !== '') metadata[key.toLowerCase()] = storableText(value, 500);
  }
  return { text: reply.text, char_count: reply.charCount, fields: fieldsFromText(reply.text), page_count: reply.totalPages, metadata };
}

/**
 * The worker's own file: dist/pdf-worker.js in the build (bin/build.js), beside every chunk; in
 * the sources (tests, a stale build), pdf-worker.ts beside this one, loaded through tsx, whose
 * --import Node 20 does not apply to a worker thread. V8 caps its heap at the PDF's memory limit
 * (array buffers, which it does not count there, are metered by the worker itself: pdf-memory.ts).
 */
export function startPdfWorker(limits: PdfLimits): Worker {
  const resourceLimits = { maxOldGenerationSizeMb: Math.ceil(limits.maxMemoryBytes / 2 ** 20) };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./pdf-worker.js', import.meta.url), { resourceLimits });
  const [tsx, file] = [import.meta.resolve('tsx/esm/api'), new URL('./pdf-worker.ts', import.meta.url).href];
  return new Worker(`import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(file)}); });`, { eval: true, resourceLimits });
}

function overMemory(limits: PdfLimits): AgentError {
  return new AgentError('unsupported_format', `the PDF needs more than ${Math.round(limits.maxMemoryBytes / 2 ** 20)} MiB to read (a compressed stream decoding to far more than the file)`);
}

/**
 * One worker thread reads PDFs, one at a time, and bounds the memory of its own thread: what the
 * agent's thread holds meanwhile (other documents) does not count against the PDF. A PDF over its
 * limits stops the worker (the next PDF starts a new one) and fails with unsupported_format: the
 * agent's own thread never decodes, so it never runs out of memory or time on a document.
 */
export class PdfReader {
  readonly #startWorker: (limits: PdfLimits) => Worker;
  #worker: { readonly thread: Worker; readonly maxMemoryBytes: number } | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 0;

  /** `startWorker` starts the thread that reads (startPdfWorker; a test may watch the ones it starts). */
  constructor(startWorker: (limits: PdfLimits) => Worker = startPdfWorker) {
    this.#startWorker = startWorker;
  }

  read(bytes: Buffer, limits: PdfLimits): Promise<PdfReply> {
    const turn = this.#queue.then(() => this.#readNow(bytes, limits));
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  #readNow(bytes: Buffer, limits: PdfLimits): Promise<PdfReply> {
    const worker = this.#workerFor(limits);
    const id = this.#nextId++;
    return new Promise<PdfReply>((resolve, reject) => {
      let failure: unknown;
      const stop = (error: AgentError): void => {
        finish();
        this.#forget(worker);
        void worker.terminate();
        reject(error);
      };
      const timer = setTimeout(() => stop(new AgentError('unsupported_format', `the PDF takes more than ${limits.timeoutMs / 1000} s to read`)), limits.timeoutMs);
      const onMessage = (reply: PdfReply): void => {
        if (reply.id !== id) return;
        finish();
        resolve(reply);
      };
      const onError = (error: unknown): void => {
        failure = error;
      };
      const onExit = (code: number): void => {
        finish();
        const heapFull = typeof failure === 'object' && failure !== null && 'code' in failure && failure.code === 'ERR_WORKER_OUT_OF_MEMORY';
        reject(code === OVER_MEMORY_EXIT_CODE || heapFull ? overMemory(limits) : new AgentError('corrupt_document', 'the PDF cannot be read: its reader stopped'));
      };
      const finish = (): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      // pdf.js takes ownership of (and may detach) the buffer it is given: hand it a copy.
      const copy = new Uint8Array(bytes);
      worker.postMessage({ id, bytes: copy, maxMemoryBytes: limits.maxMemoryBytes } satisfies PdfRequest, [copy.buffer]);
    });
  }

  /** The running worker, or a new one if there is none or it was started for another memory limit. */
  #workerFor(limits: PdfLimits): Worker {
    if (this.#worker?.maxMemoryBytes === limits.maxMemoryBytes) return this.#worker.thread;
    if (this.#worker) void this.#worker.thread.terminate();
    const thread = this.#startWorker(limits);
    // Idle, it must not keep the process alive.
    thread.unref();
    thread.on('error', () => {
      // Reported to the waiting read as an exit.
    });
    // A worker that ends while idle is forgotten, or the next PDF would wait on it until timed out.
    thread.on('exit', () => this.#forget(thread));
    this.#worker = { thread, maxMemoryBytes: limits.maxMemoryBytes };
    return thread;
  }

  #forget(thread: Worker): void {
    if (this.#worker?.thread === thread) this.#worker = undefined;
  }
}

const reader = new PdfReader();
