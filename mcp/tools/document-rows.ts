/** The document statuses of the pipeline, in the order a document normally moves through them. */
export const DOCUMENT_STATUSES = ['pending', 'processing', 'extracted', 'validated', 'archived', 'failed'] as const;

/** One of {@link DOCUMENT_STATUSES}. */
export type DocumentStatus = (typeof DOCUMENT_STATUSES)[number];

/** Schema fragments shared by the document and log tools. */
export const SCHEMA = {
  // The uuid format alone also takes a urn:uuid: prefix, which PostgreSQL's uuid type refuses.
  documentId: { type: 'string', format: 'uuid', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$', description: 'Document id (UUID).' },
  status: { type: 'string', enum: DOCUMENT_STATUSES },
} as const;

/**
 * A string pattern for free-text arguments refusing what PostgreSQL text cannot hold as sent:
 * U+0000 (refused by the server) and a lone UTF-16 surrogate (no UTF-8 form: the driver would
 * store U+FFFD in its place, silently). ajv compiles patterns with the u flag, under which the
 * surrogate range matches only unpaired halves, so an emoji passes.
 */
export const STORABLE_TEXT = '^[^\\u0000\\ud800-\\udfff]*$';

/**
 * A timestamptz column as ISO 8601 text in UTC, to the millisecond (what Date#toISOString
 * writes), whatever the session's DateStyle and TimeZone: those are the server's, the database's
 * or the role's to set, and under another DateStyle (SQL, German…) the driver's own parser
 * reads nothing and answers null.
 */
export function isoText(column: string, as = column): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ${as}`;
}

/**
 * The column list every document query returns. bigint is cast so pg and PGlite hand back the
 * same JS type, timestamps are ISO text ({@link isoText}); created_at also travels to the
 * microsecond, in UTC and DateStyle ISO whatever the session's, for exact keyset cursors.
 */
export const DOCUMENT_COLUMNS = `document_id::text AS document_id, filename, content_type, s3_key,
  size_bytes::float8 AS size_bytes, sha256, status, extracted, validation, error, archive_key,
  ${isoText('claimed_at')}, claim_count, ${isoText('created_at')}, ${isoText('updated_at')},
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS created_cursor`;

/**
 * The same without `extracted`, for listings: an extraction can be megabytes (a CSV's rows as the
 * upload had them), and a page of 100 documents would have carried 100 of them into the gateway's
 * memory and the answer. documents_get returns it.
 */
export const LISTED_DOCUMENT_COLUMNS = DOCUMENT_COLUMNS.replace(' extracted,', '');

/** One document by id: the query of documents_get (and of the benchmark's direct baseline). */
export const GET_DOCUMENT_SQL = `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE document_id = $1`;

/** A row as selected with {@link DOCUMENT_COLUMNS}. */
export interface DocumentRow {
  document_id: string;
  filename: string;
  content_type: string;
  s3_key: string;
  size_bytes: number;
  sha256: string;
  status: DocumentStatus;
  extracted: unknown;
  validation: unknown;
  error: string | null;
  archive_key: string | null;
  /** ISO 8601 UTC text ({@link isoText}), as the three timestamps below. */
  claimed_at: string | null;
  claim_count: number;
  created_at: string;
  updated_at: string;
  created_cursor: string;
}

/** The wire form of a document as listed: everything but `extracted`. */
export function toListedDocument(row: Omit<DocumentRow, 'extracted'>) {
  const { extracted: _extracted, ...listed } = toDocument({ ...row, extracted: null });
  return listed;
}

/** The wire form of a document. */
export function toDocument(row: DocumentRow) {
  return {
    document_id: row.document_id,
    filename: row.filename,
    content_type: row.content_type,
    s3_key: row.s3_key,
    size_bytes: row.size_bytes,
    sha256: row.sha256,
    status: row.status,
    extracted: row.extracted ?? null,
    validation: row.validation ?? null,
    error: row.error,
    archive_key: row.archive_key,
    claimed_at: row.claimed_at,
    claim_count: row.claim_count,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Encodes a keyset position as an opaque cursor. */
export function encodeCursor(row: Pick<DocumentRow, 'created_cursor' | 'document_id'>): string {
  return Buffer.from(JSON.stringify([row.created_cursor, row.document_id])).toString('base64url');
}

// created_at in PostgreSQL's ISO output, as created_cursor writes it (2024-05-01 12:34:56.123456+00)
// or as created_at::text wrote it before, in the session's time zone (…+05:30).
const CURSOR_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Decodes a cursor made by {@link encodeCursor}; undefined when it is not one. Date.parse turns
 * away a month 13 or an hour 25; a day the month lacks still reaches PostgreSQL, which refuses it
 * as a data exception (invalid_arguments too).
 */
export function decodeCursor(cursor: string): [string, string] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [time, id] = v as unknown[];
  if (typeof time !== 'string' || !CURSOR_TIME.test(time) || Number.isNaN(Date.parse(time))) return undefined;
  if (typeof id !== 'string' || !UUID.test(id)) return undefined;
  return [time, id];
}
