import { Worker } from 'node:worker_threads';
import { AgentError } from '../shared/rpc-errors.js';
import { storableText } from '../shared/storable-text.js';
import { MAX_PARSER_MESSAGE, type FieldValue, type ParsedContent } from './extraction.js';
import type { PdfReply } from './pdf-worker.js';
import { fieldsFromText } from './text-fields.js';

const PDF_MAGIC = '%PDF-';
const META_KEYS = ['Title', 'Author', 'Subject', 'Creator', 'Producer', 'CreationDate'] as const;

/** How much one PDF may cost to read. A compressed stream can decode to a thousand times its size. */
export interface PdfLimits {
  /** Growth of the process's resident memory while the PDF is read. Default 384 MiB. */
  readonly maxMemoryBytes: number;
  /** Time to read it. Default 20 s. */
  readonly timeoutMs: number;
}

export const PDF_LIMITS: PdfLimits = { maxMemoryBytes: 384 * 1024 * 1024, timeoutMs: 20_000 };

const MEMORY_CHECK_MS = 25;

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
 * --import Node 20 does not apply to a worker thread.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./pdf-worker.js', import.meta.url));
  const [tsx, file] = [import.meta.resolve('tsx/esm/api'), new URL('./pdf-worker.ts', import.meta.url).href];
  return new Worker(`import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(file)}); });`, { eval: true });
}

/**
 * One worker thread reads PDFs, one at a time, so the memory the process gains while it reads is
 * that PDF's. A PDF over its limits stops the worker (the next PDF starts a new one) and fails
 * with unsupported_format: the agent's own thread never decodes, so it never runs out of memory
 * or time on a document.
 */
class PdfReader {
  #worker: Worker | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 0;

  read(bytes: Buffer, limits: PdfLimits): Promise<PdfReply> {
    const turn = this.#queue.then(() => this.#readNow(bytes, limits));
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  #readNow(bytes: Buffer, limits: PdfLimits): Promise<PdfReply> {
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    const before = process.memoryUsage.rss();
    return new Promise<PdfReply>((resolve, reject) => {
      const stop = (error: AgentError): void => {
        finish();
        this.#worker = undefined;
        void worker.terminate();
        reject(error);
      };
      const watch = setInterval(() => {
        if (process.memoryUsage.rss() - before > limits.maxMemoryBytes) {
          stop(new AgentError('unsupported_format', `the PDF needs more than ${Math.round(limits.maxMemoryBytes / 2 ** 20)} MiB to read (a compressed stream decoding to far more than the file)`));
        }
      }, MEMORY_CHECK_MS);
      const timer = setTimeout(() => stop(new AgentError('unsupported_format', `the PDF takes more than ${limits.timeoutMs / 1000} s to read`)), limits.timeoutMs);
      const onMessage = (reply: PdfReply): void => {
        if (reply.id !== id) return;
        finish();
        resolve(reply);
      };
      const onExit = (): void => {
        finish();
        this.#worker = undefined;
        reject(new AgentError('corrupt_document', 'the PDF cannot be read: its reader stopped'));
      };
      const finish = (): void => {
        clearInterval(watch);
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('exit', onExit);
      // pdf.js takes ownership of (and may detach) the buffer it is given: hand it a copy.
      const copy = new Uint8Array(bytes);
      worker.postMessage({ id, bytes: copy }, [copy.buffer]);
    });
  }

  #start(): Worker {
    const worker = startWorker();
    // Idle, it must not keep the process alive.
    worker.unref();
    worker.on('error', () => {
      // Reported to the waiting read as an exit.
    });
    this.#worker = worker;
    return worker;
  }
}

const reader = new PdfReader();
