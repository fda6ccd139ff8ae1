import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import { extractBytes } from '../../agents/extractor/extractor.js';
import { parsePdf } from '../../agents/extractor/parse-pdf.js';
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

// 300 MiB of content stream in some 300 KB: made once, read by two tests.
const BOMB = decompressionBomb(300 * 2 ** 20);

describe('parsePdf (pdf.js in a worker thread, within limits)', () => {
  it('reads the sample invoice: its page and text layer', async () => {
    const parsed = await parsePdf(INVOICE);
    assert.equal(parsed.page_count, 1);
    assert.match(parsed.text, /INV-2024-001/);
  });

  it('stops a PDF whose stream decodes past the memory limit, then reads the next one', async () => {
    assert.ok(BOMB.length < 400_000, `${BOMB.length} bytes on disk`);
    await assert.rejects(parsePdf(BOMB, { maxMemoryBytes: 64 * 2 ** 20, timeoutMs: 120_000 }), (error: unknown) => {
      assert.ok(isAgentError(error));
      assert.equal(error.code, 'unsupported_format');
      assert.match(error.message, /^the PDF needs more than 64 MiB to read/);
      return true;
    });
    assert.equal((await parsePdf(INVOICE)).page_count, 1, 'a new reader took over');
  });

  it('stops a PDF that takes longer than the time limit', async () => {
    await assert.rejects(parsePdf(BOMB, { maxMemoryBytes: 2 ** 40, timeoutMs: 50 }), /^AgentError: the PDF takes more than 0\.05 s to read$/);
    assert.equal((await parsePdf(INVOICE)).page_count, 1);
  });

  // The whole text layer came over to the agent's thread, to be copied, joined and scanned there:
  // within the memory limit, a few hundred KB of PDF can hold a hundred million characters.
  it('hands the agent at most 1 000 000 characters of a text layer, and counts them all', async () => {
    // 1 500 lines of 999 characters, all on the page (pdf.js leaves out text past its edges).
    const line = `(${'x'.repeat(999)}) Tj 0 -0.5 Td\n`;
    const pdf = onePagePdf(Buffer.from(`BT /F1 0.5 Tf 10 780 Td\n${line.repeat(1500)}ET\n`, 'latin1'));
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
