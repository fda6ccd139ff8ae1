import { parentPort } from 'node:worker_threads';
import { extractText, getDocumentProxy, getMeta } from 'unpdf';

/** What the PDF worker answers for one document. */
export type PdfReply =
  | { readonly id: number; readonly ok: true; readonly totalPages: number; readonly text: readonly string[]; readonly info: Record<string, unknown> }
  | { readonly id: number; readonly ok: false; readonly name: string; readonly message: string };

/**
 * pdf.js in a worker thread (agents/extractor/parse-pdf.ts): the thread that decodes a PDF's
 * streams can be stopped mid-decode when it takes too long or too much memory, which a decode on
 * the agent's own thread could not.
 */
parentPort?.on('message', (request: { id: number; bytes: Uint8Array }) => {
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

async function read(bytes: Uint8Array): Promise<{ totalPages: number; text: string[]; info: Record<string, unknown> }> {
  const pdf = await getDocumentProxy(bytes, { verbosity: 0, isEvalSupported: false });
  try {
    const { totalPages, text } = await extractText(pdf, { mergePages: false });
    const { info } = await getMeta(pdf);
    return { totalPages, text, info: { ...(info as Record<string, unknown>) } };
  } finally {
    await pdf.destroy();
  }
}
