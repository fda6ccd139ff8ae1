import { extractText, getDocumentProxy, getMeta } from 'unpdf';
import { AgentError } from '../shared/rpc-errors.js';
import type { FieldValue, ParsedContent } from './extraction.js';
import { fieldsFromText } from './text-fields.js';

const PDF_MAGIC = '%PDF-';
const META_KEYS = ['Title', 'Author', 'Subject', 'Creator', 'Producer', 'CreationDate'] as const;

/** pdf.js names its exceptions; match on the name (they are not exported as classes we share). */
function pdfFailure(error: unknown): AgentError {
  const name = error instanceof Error ? error.name : '';
  if (name === 'PasswordException') return new AgentError('unsupported_format', 'the PDF is encrypted; only unencrypted PDFs can be read');
  const detail = error instanceof Error ? error.message : String(error);
  return new AgentError('corrupt_document', `the PDF cannot be read: ${detail}`);
}

/** Text layer and info dictionary of a PDF (no OCR: a scanned page yields no text). */
export async function parsePdf(bytes: Buffer): Promise<ParsedContent> {
  if (bytes.subarray(0, PDF_MAGIC.length).toString('latin1') !== PDF_MAGIC) {
    throw new AgentError('corrupt_document', 'the file is not a PDF (no %PDF- header)');
  }
  try {
    // pdf.js takes ownership of (and may detach) the buffer it is given: hand it a copy.
    const pdf = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0, isEvalSupported: false });
    try {
      const { totalPages, text } = await extractText(pdf, { mergePages: false });
      const { info } = await getMeta(pdf);
      const metadata: Record<string, FieldValue> = {};
      for (const key of META_KEYS) {
        const value: unknown = info[key];
        if (typeof value === 'string' && value !== '') metadata[key.toLowerCase()] = value.slice(0, 500);
      }
      const joined = text.join('\n\f\n');
      return { text: joined, fields: fieldsFromText(joined), page_count: totalPages, metadata };
    } finally {
      await pdf.destroy();
    }
  } catch (error) {
    throw pdfFailure(error);
  }
}
