import { createHash } from 'node:crypto';
import type { DocumentRecord, StoredObject } from '../shared/documents.js';
import { asAgentError, type EgressClient } from '../shared/egress-client.js';
import type { MethodHandler } from '../shared/jsonrpc-server.js';
import { AgentError } from '../shared/rpc-errors.js';
import { assertClaimCurrent, claimFence, stepClaim, writeOrRecorded } from '../shared/step-claim.js';
import { storableText } from '../shared/storable-text.js';
import { detectFormat } from './detect-format.js';
import { MAX_STORED_TEXT, MAX_STORED_VALUE, type DocumentFormat, type Extraction, type FieldValue, type ParsedContent } from './extraction.js';
import { parseCsv } from './parse-csv.js';
import { parseJson } from './parse-json.js';
import { parsePdf } from './parse-pdf.js';
import { parseText } from './parse-text.js';
import { DEFAULT_MAX_PDFS, pdfSlots } from './pdf-admission.js';
import { DEFAULT_MAX_DOCUMENTS, documentSlots, type DocumentHolderOptions } from '../shared/document-slots.js';
import { stepKey } from '../shared/admission.js';
import type { AgentMetrics } from '../shared/metrics.js';

const PARSERS: Readonly<Record<DocumentFormat, (bytes: Buffer) => ParsedContent | Promise<ParsedContent>>> = {
  pdf: parsePdf,
  csv: parseCsv,
  json: parseJson,
  text: parseText,
};

const PREVIEW_CHARS = 500;

/**
 * The values of a record, storable (storableText) and capped. Keys are left as they are: every
 * parser names fields and columns with fieldName (a-z, 0-9, _) or a fixed list.
 */
function storableValues<V extends FieldValue>(record: Record<string, V>): Record<string, V> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [key, typeof value === 'string' ? storableText(value, MAX_STORED_VALUE) as V : value]));
}

/**
 * The parsed content as PostgreSQL can store it in the document's jsonb column: a document's text
 * may hold NUL (a CSV, a PDF's text layer) or, through JSON escapes, unpaired surrogates, and the
 * whole extraction would otherwise be refused.
 */
function storableContent(parsed: ParsedContent): ParsedContent {
  return {
    ...parsed,
    text: storableText(parsed.text, MAX_STORED_TEXT),
    fields: storableValues(parsed.fields),
    ...(parsed.rows === undefined ? {} : { rows: parsed.rows.map((row) => storableValues(row)) }),
    ...(parsed.metadata === undefined ? {} : { metadata: storableValues(parsed.metadata) }),
  };
}

/** Extracts a file's bytes; throws corrupt_document or unsupported_format with the reason. */
export async function extractBytes(bytes: Buffer, contentType: string, filename: string, now = new Date()): Promise<Extraction> {
  const format = detectFormat(contentType, filename);
  const parsed = await PARSERS[format](bytes);
  const rows = parsed.rows;
  return {
    ...storableContent(parsed),
    format,
    content_hash: createHash('sha256').update(bytes).digest('hex'),
    size_bytes: bytes.length,
    char_count: parsed.char_count ?? parsed.text.length,
    text_truncated: (parsed.char_count ?? parsed.text.length) > MAX_STORED_TEXT,
    rows_truncated: rows !== undefined && (parsed.row_count ?? 0) > rows.length,
    extracted_at: now.toISOString(),
  };
}

/** The answer of extract_document: the extraction without the bulk (get_document has it all). */
function extractionSummary(documentId: string, extraction: Extraction, reused: boolean): Record<string, unknown> {
  const { text, rows: _rows, ...rest } = extraction;
  return { document_id: documentId, status: 'extracted', reused, ...rest, text_preview: storableText(text, PREVIEW_CHARS) };
}

/** Options of {@link extractorHandlers}. */
export interface ExtractorOptions extends DocumentHolderOptions {
  /**
   * PDFs held at once, fetched and waiting for the reader or being read (default
   * {@link DEFAULT_MAX_PDFS}); an extract_document of a PDF past it answers `busy`.
   */
  readonly maxPdfs?: number;
}

/** The extractor's methods. */
export function extractorHandlers(egress: EgressClient, metrics: Pick<AgentMetrics, 'pdfAdmissions' | 'pdfsHeld' | 'documentAdmissions' | 'documentsHeld'>, opts: ExtractorOptions = {}): Record<string, MethodHandler> {
  const pdfs = pdfSlots(opts.maxPdfs ?? DEFAULT_MAX_PDFS, metrics);
  // Any other format is parsed on the agent's own thread, but its file is held from the fetch on.
  const others = documentSlots('extractor', opts.maxDocuments ?? DEFAULT_MAX_DOCUMENTS, metrics);
  return {
    async extract_document(params) {
      const claim = stepClaim(params);
      const { documentId } = claim;
      try {
        const doc = await egress.callTool<DocumentRecord>('documents_get', { document_id: documentId });
        assertClaimCurrent(claim, doc);
        // A retry after the extraction was recorded gets the recorded one: extraction is idempotent.
        const recorded = (now: DocumentRecord) => (now.status === 'extracted' && now.extracted !== null
          ? extractionSummary(documentId, now.extracted as unknown as Extraction, true) : undefined);
        const reused = recorded(doc);
        if (reused !== undefined) return reused;
        if (doc.status !== 'processing') {
          throw new AgentError('conflict', `document ${documentId} is ${doc.status}; only a claimed (processing) document is extracted`, { current_status: doc.status });
        }
        const extract = async (): Promise<Extraction> => {
          const object = await egress.callTool<StoredObject>('s3_get_object', { key: doc.s3_key });
          return extractBytes(Buffer.from(object.content_base64, 'base64'), doc.content_type, doc.filename);
        };
        // A slot is taken before the object is fetched: a PDF's (the reader reads one at a time), or a document's.
        const slots = detectFormat(doc.content_type, doc.filename) === 'pdf' ? pdfs : others;
        const extraction = await slots.run(stepKey(documentId, claim.claimCount), extract);
        return await writeOrRecorded(egress, claim, async () => {
          await egress.callTool('documents_update', {
            document_id: documentId, expected_status: 'processing', ...claimFence(claim), status: 'extracted', extracted: extraction, error: null,
          });
          return extractionSummary(documentId, extraction, false);
        }, recorded);
      } catch (error) {
        throw asAgentError(error);
      }
    },
  };
}
