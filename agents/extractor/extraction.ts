/** The formats the extractor reads. */
export type DocumentFormat = 'pdf' | 'csv' | 'json' | 'text';

/** A scalar field value found in a document. */
export type FieldValue = string | number | boolean | null;

/** What a format parser found; the extractor adds the hash, sizes and time. */
export interface ParsedContent {
  readonly text: string;
  readonly fields: Record<string, FieldValue>;
  readonly page_count?: number;
  readonly row_count?: number;
  readonly columns?: string[];
  readonly rows?: Record<string, string>[];
  /** Rows whose column count differs from the header's (1-based numbers of the data rows), the first {@link MAX_LISTED_INCONSISTENT_ROWS}. */
  readonly inconsistent_rows?: number[];
  /** How many rows differ from the header's column count, all of them (inconsistent_rows lists the first). */
  readonly inconsistent_row_count?: number;
  readonly metadata?: Record<string, FieldValue>;
  /** The whole text's length, when `text` is only its first {@link MAX_PARSED_TEXT} characters (a PDF's text layer). */
  readonly char_count?: number;
}

/** The extraction stored on the document (`documents.extracted`) and returned by extract_document. */
export interface Extraction extends ParsedContent {
  readonly format: DocumentFormat;
  /** SHA-256 (hex) of the bytes that were extracted, for the validator's hash rule. */
  readonly content_hash: string;
  readonly size_bytes: number;
  readonly char_count: number;
  readonly text_truncated: boolean;
  readonly rows_truncated: boolean;
  readonly extracted_at: string;
}

/** Stored text and rows are capped so a document row stays small; counts are of the whole file. */
export const MAX_STORED_TEXT = 100_000;
/**
 * Most of a PDF's text layer the reader hands over: within its memory limit a PDF can still decode
 * to a hundred million characters, which the agent's own thread would then copy, join and scan.
 * Stored text is cut far sooner; "Label: value" fields are looked for in this much.
 */
export const MAX_PARSED_TEXT = 1_000_000;
/** Longest field value, metadata value or CSV cell stored (a JSON value can be the whole file). */
export const MAX_STORED_VALUE = 2_000;
export const MAX_STORED_ROWS = 500;
/** Stored rows stop earlier on a wide CSV: each row repeats every column name. */
export const MAX_STORED_CELLS = 20_000;
/**
 * Longest parser message quoted in a failure reason: the JSON and CSV parsers' messages quote the
 * document's own text, which is attacker-controlled.
 */
export const MAX_PARSER_MESSAGE = 300;
/** Inconsistent CSV rows listed by number (inconsistent_row_count counts every one). */
export const MAX_LISTED_INCONSISTENT_ROWS = 100;
/** Widest CSV read: a row object per row has one key per column. */
export const MAX_CSV_COLUMNS = 1_000;
