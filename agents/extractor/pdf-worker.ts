import { parentPort } from 'node:worker_threads';
import { extractText, getDocumentProxy, getMeta } from 'unpdf';
import { MAX_PARSED_TEXT } from './extraction.js';
import { meterArrayBuffers } from './pdf-memory.js';

/** What the reader asks the worker: one PDF, and the memory this thread may use to read it. */
export interface PdfRequest {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly maxMemoryBytes: number;
}

/** What the PDF worker answers for one document. */
export type PdfReply =
  | {
    readonly id: number; readonly ok: true; readonly totalPages: number;
    /** The text joined by PAGE_BREAK, cut at MAX_PARSED_TEXT characters; charCount is the whole one's length. */
    readonly text: string; readonly charCount: number; readonly info: Record<string, unknown>;
  }
  | { readonly id: number; readonly ok: false; readonly name: string; readonly message: string };

/**
 * pdf.js in a worker thread (agents/extractor/parse-pdf.ts): the thread that decodes a PDF's
 * streams can be stopped mid-decode when it takes too long or too much memory, which a decode on
 * the agent's own thread could not. It stops itself past its memory budget (pdf-memory.ts); the
 * reader stops it past the time limit.
 */
const meter = parentPort ? meterArrayBuffers() : undefined;
parentPort?.on('message', (request: PdfRequest) => {
  meter?.setBudget(request.maxMemoryBytes);
  void read(request.bytes).then(
    (result) => parentPort?.postMessage({ id: request.id, ok: true, ...result } satisfies PdfReply),
    (error: unknown) => parentPort?.postMessage({
      id: request.id,
      ok: false,
      name: error instanceof Error ? error.name : 'Error',
      message: error instanceof Error ? error.message : String(error),
    } satisfies PdfReply),
  );
});

/** Between two pages' text. */
const PAGE_BREAK = '\n\f\n';

/** The pages' text joined, cut at `max` characters, and the whole join's length (never built). */
function joinPages(pages: readonly string[], max: number): { text: string; charCount: number } {
  const charCount = pages.reduce((sum, page) => sum + page.length, 0) + PAGE_BREAK.length * Math.max(0, pages.length - 1);
  let text = '';
  for (const [index, page] of pages.entries()) {
    if (index > 0) text += PAGE_BREAK;
    text += page.slice(0, Math.max(0, max - text.length));
    if (text.length >= max) break;
  }
  return { text: text.slice(0, max), charCount };
}

async function read(bytes: Uint8Array): Promise<{ totalPages: number; text: string; charCount: number; info: Record<string, unknown> }> {
  const pdf = await getDocumentProxy(bytes, { verbosity: 0, isEvalSupported: false });
  try {
    const { totalPages, text } = await extractText(pdf, { mergePages: false });
    const { info } = await getMeta(pdf);
    return { totalPages, ...joinPages(text, MAX_PARSED_TEXT), info: { ...(info as Record<string, unknown>) } };
  } finally {
    await pdf.destroy();
  }
}
