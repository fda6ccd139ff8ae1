import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { deflateSync } from 'node:zlib';
import { extractBytes } from '../../agents/extractor/extractor.js';
import { parsePdf, PDF_LIMITS, PdfReader, startPdfWorker, type PdfLimits } from '../../agents/extractor/parse-pdf.js';
import { isAgentError } from '../../agents/shared/rpc-errors.js';

const INVOICE = readFileSync(new URL('../../examples/documents/invoice-2024-001.pdf', import.meta.url));

/** A one-page PDF whose content stream is `decodedBytes` spaces, deflated (about 1000:1). */
function decompressionBomb(decodedBytes: number): Buffer {
  return onePagePdf(Buffer.alloc(decodedBytes, 0x20));
}

/** A one-page PDF with this content stream, deflated, and Helvetica as /F1. */
function onePagePdf(content: Buffer): Buffer {
  const stream = deflateSync(content, { level: 9 });
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let length = 0;
  const add = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    parts.push(bytes);
    length += bytes.length;
  };
  const object = (n: number, body: string | Buffer[]): void => {
    offsets[n] = length;
    add(`${n} 0 obj\n`);
    for (const piece of typeof body === 'string' ? [body] : body) add(piece);
    add('\nendobj\n');
  };
  add('%PDF-1.4\n');
  object(1, '<< /Type /Catalog /Pages 2 0 R >>');
  object(2, '<< /Type /Pages /Kids [3 0 R] /Count 1 >>');
  object(3, '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>');
  object(4, [Buffer.from(`<< /Length ${stream.length} /Filter /FlateDecode >>\nstream\n`, 'latin1'), stream, Buffer.from('\nendstream', 'latin1')]);
  const xref = length;
  add(`xref\n0 5\n0000000000 65535 f \n${offsets.slice(1).map((offset) => `${String(offset).padStart(10, '0')} 00000 n \n`).join('')}`);
  add(`trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`);
  return Buffer.concat(parts);
}

// 300 MiB of content stream in some 300 KB: made once, by the first test that reads it (the 300
// MiB it is made from, left to the collector, would be given back during the tests before).
let bomb: Buffer | undefined;
const BOMB = (): Buffer => (bomb ??= decompressionBomb(300 * 2 ** 20));

// 1 500 lines of 999 characters, all on the page (pdf.js leaves out text past its edges).
const LONG_TEXT = onePagePdf(Buffer.from(`BT /F1 0.5 Tf 10 780 Td\n${`(${'x'.repeat(999)}) Tj 0 -0.5 Td\n`.repeat(1500)}ET\n`, 'latin1'));

describe('parsePdf (pdf.js in a worker thread, within limits)', () => {
  it('reads the sample invoice: its page and text layer', async () => {
    const parsed = await parsePdf(INVOICE);
    assert.equal(parsed.page_count, 1);
    assert.match(parsed.text, /INV-2024-001/);
  });

  // The limit is the reader thread's: it used to be the growth of the whole process, so the
  // agent's thread parsing other documents meanwhile failed a valid PDF. (Before the bombs: memory
  // given back meanwhile, by a reader stopped just before or the collector, hid that growth.)
  it('reads a PDF while the agent\'s own thread takes and holds more memory than the limit', async () => {
    // A valid PDF that takes a while to read (a million and a half characters of text).
    const reading = parsePdf(LONG_TEXT);
    // The read has started (its turn came at once: the queue is empty).
    await new Promise(setImmediate);
    const held = Array.from({ length: 7 }, () => Buffer.alloc(64 * 2 ** 20, 1));
    assert.ok(held.length * 64 * 2 ** 20 > PDF_LIMITS.maxMemoryBytes);
    assert.equal((await reading).page_count, 1);
    assert.equal(held.at(-1)?.at(-1), 1, 'still held after the read');
  });

  it('stops a PDF whose stream decodes past the memory limit before it is decoded, then reads the next one', async () => {
    assert.ok(BOMB().length < 400_000, `${BOMB().length} bytes on disk`);
    const limits: PdfLimits = { maxMemoryBytes: 64 * 2 ** 20, timeoutMs: 120_000 };
    // A reader with these limits is running: what the process gains from here is the decoding.
    assert.equal((await parsePdf(INVOICE, limits)).page_count, 1);
    const before = process.memoryUsage.rss();
    let gained = 0;
    const sample = setInterval(() => {
      gained = Math.max(gained, process.memoryUsage.rss() - before);
    }, 5);
    try {
      await assert.rejects(parsePdf(BOMB(), limits), (error: unknown) => {
        assert.ok(isAgentError(error));
        assert.equal(error.code, 'unsupported_format');
        assert.match(error.message, /^the PDF needs more than 64 MiB to read/);
        return true;
      });
    } finally {
      clearInterval(sample);
    }
    // Decoded whole, the stream would take 300 MiB, and pdf.js's buffer for it 512 (V8's heap
    // limit alone lets it: array buffers are not counted there).
    assert.ok(gained < 160 * 2 ** 20, `the process gained ${Math.round(gained / 2 ** 20)} MiB`);
    assert.equal((await parsePdf(INVOICE)).page_count, 1, 'a new reader took over');
  });

  it('stops the same PDF under the default limits (384 MiB)', async () => {
    await assert.rejects(parsePdf(BOMB()), (error: unknown) => isAgentError(error) && error.code === 'unsupported_format' && /^the PDF needs more than 384 MiB to read/.test(error.message));
  });

  it('forgets a reader thread that ended while idle: the next PDF starts a new one', async () => {
    const started: Worker[] = [];
    const reader = new PdfReader((limits) => {
      const worker = startPdfWorker(limits);
      started.push(worker);
      return worker;
    });
    assert.equal((await reader.read(INVOICE, PDF_LIMITS)).ok, true);
    assert.equal(started.length, 1);
    // Ended as a crash would end it: its exit comes while no read waits on it.
    await started[0]?.terminate();
    assert.equal((await reader.read(INVOICE, PDF_LIMITS)).ok, true);
    assert.equal(started.length, 2);
    await started[1]?.terminate();
  });

  it('answers unsupported_format when the reader thread runs out of heap, and reads the next PDF', async () => {
    const hog = 'const held = []; require("node:worker_threads").parentPort.on("message", () => { for (;;) held.push({ at: held.length }); });';
    const started: Worker[] = [];
    const reader = new PdfReader((limits) => {
      const worker = started.length === 0 ? new Worker(hog, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 16 } }) : startPdfWorker(limits);
      started.push(worker);
      return worker;
    });
    await assert.rejects(reader.read(INVOICE, PDF_LIMITS), (error: unknown) => isAgentError(error) && error.code === 'unsupported_format' && /^the PDF needs more than 384 MiB to read/.test(error.message));
    assert.equal((await reader.read(INVOICE, PDF_LIMITS)).ok, true);
    assert.equal(started[1]?.resourceLimits?.maxOldGenerationSizeMb, 384, 'V8 caps a reader thread\'s heap at the limit');
    await started[1]?.terminate();
  });

  it('stops a PDF that takes longer than the time limit', async () => {
    await assert.rejects(parsePdf(BOMB(), { maxMemoryBytes: 2 ** 40, timeoutMs: 50 }), /^AgentError: the PDF takes more than 0\.05 s to read$/);
    assert.equal((await parsePdf(INVOICE)).page_count, 1);
  });

  // The whole text layer came over to the agent's thread, to be copied, joined and scanned there:
  // within the memory limit, a few hundred KB of PDF can hold a hundred million characters.
  it('hands the agent at most 1 000 000 characters of a text layer, and counts them all', async () => {
    const pdf = LONG_TEXT;
    const parsed = await parsePdf(pdf);
    assert.equal(parsed.text.length, 1_000_000);
    assert.ok((parsed.char_count ?? 0) >= 1_499_000, String(parsed.char_count));
    const extraction = await extractBytes(pdf, 'application/pdf', 'long.pdf');
    assert.equal(extraction.char_count, parsed.char_count);
    assert.equal(extraction.text_truncated, true);
  });

  it('says corrupt_document for bytes pdf.js cannot read', async () => {
    await assert.rejects(parsePdf(Buffer.from('%PDF-1.7\nthis is not really a PDF\n')), (error: unknown) => isAgentError(error) && error.code === 'corrupt_document');
  });
});
