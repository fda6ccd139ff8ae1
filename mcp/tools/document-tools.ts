import { randomUUID } from 'node:crypto';
import { ToolError } from '../errors.js';
import { BIDI_CONTROLS, normaliseKey } from '../object-keys.js';
import { DOCUMENT_COLUMNS, GET_DOCUMENT_SQL, LISTED_DOCUMENT_COLUMNS, STORABLE_TEXT, SCHEMA, decodeCursor, encodeCursor, toDocument, toListedDocument } from './document-rows.js';
import type { DocumentRow, DocumentStatus } from './document-rows.js';
import { sqlQuery } from './sql-run.js';
import type { ToolFamily } from './tool-types.js';
import { TOOL_HINTS } from './tool-hints.js';

interface CreateArgs { filename: string; content_type: string; s3_key: string; size_bytes: number; sha256: string; document_id?: string }
interface IdArgs { document_id: string }
interface DeleteArgs { document_id: string; expected_status?: DocumentStatus | DocumentStatus[]; expected_claim_count?: number }
interface ListArgs { status?: DocumentStatus; limit: number; cursor?: string }
interface UpdateArgs {
  document_id: string;
  expected_status?: DocumentStatus | DocumentStatus[];
  expected_claim_count?: number;
  status?: DocumentStatus;
  extracted?: object;
  validation?: object;
  error?: string | null;
  archive_key?: string;
}

/**
 * A document's file name: no path separator, no control character (C0, DEL and C1, as U+009B,
 * the 8-bit CSI that opens a terminal escape), no bidirectional control (the name people read in
 * listings and summaries: invoice\u202efdp.exe shows as invoicexe.pdf), no lone surrogate.
 */
const FILENAME = `^[^\\u0000-\\u001f\\u007f-\\u009f${BIDI_CONTROLS}/\\\\\\ud800-\\udfff]+$`;

const idOnly = { type: 'object', additionalProperties: false, required: ['document_id'], properties: { document_id: SCHEMA.documentId } };

/** The conditions of a write: a status or a list, and the claim the caller read or holds. */
const EXPECTED = {
  expected_status: { anyOf: [SCHEMA.status, { type: 'array', items: SCHEMA.status, minItems: 1, uniqueItems: true }] },
  expected_claim_count: {
    type: 'integer', minimum: 0, maximum: 2147483647,
    description: 'claim_count of the claim the caller holds (or read): the write applies only while it is still the current one.',
  },
};

// JSON.stringify writes U+0000 and a lone surrogate as escapes (\u0000, \ud800; a paired one
// goes out as the character itself), and jsonb refuses both; a backslash escaped before "u0000"
// (\\u0000) is plain text and passes.
const NUL_ESCAPE = /(?<!\\)(?:\\\\)*\\u0000/;
const LONE_SURROGATE_ESCAPE = /(?<!\\)(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/;

/**
 * Deepest nesting of objects and arrays in `extracted` or `validation` (the agents write 3 levels).
 * The request's JSON.parse takes any depth, but V8's JSON.stringify overflows its stack a few
 * thousand levels down: deeper, the write failed as an internal error, and a row written deeper
 * by other means could not be answered at all.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether objects and arrays nest in `value` deeper than `max` levels; walked without recursion. */
function nestedDeeperThan(value: object, max: number): boolean {
  const pending: [unknown, number][] = [[value, 1]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth] = next;
    if (typeof item !== 'object' || item === null) continue;
    if (depth > max) return true;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}

/** The JSON text of an object argument for a jsonb column; invalid_arguments when jsonb cannot hold it. */
function jsonbText(name: string, value: object): string {
  if (nestedDeeperThan(value, MAX_JSON_DEPTH)) throw new ToolError('invalid_arguments', `${name} nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`);
  const text = JSON.stringify(value);
  if (NUL_ESCAPE.test(text)) throw new ToolError('invalid_arguments', `${name} contains U+0000, which the database cannot store`);
  if (LONE_SURROGATE_ESCAPE.test(text)) {
    throw new ToolError('invalid_arguments', `${name} contains a lone UTF-16 surrogate (not valid Unicode), which the database cannot store`);
  }
  return text;
}

/**
 * The row a conditional write decides on, `$1` its id, locked (FOR UPDATE) for the statement: its
 * latest committed version, which no other write can change until the statement ends. The write
 * tests its conditions on these columns, so that what decides the write and what explains a miss
 * are the same version of the row.
 */
const LOCKED_ROW = `cur AS MATERIALIZED (
    SELECT document_id AS cur_id, status AS cur_status, claim_count AS cur_claim_count, claimed_at AS cur_claimed_at,
      updated_at AS cur_updated_at
    FROM documents WHERE document_id = $1 FOR UPDATE)`;

/** What a {@link decidedWrite} statement returns: the written row when it wrote, and the locked row's status and claim (null: no such document). */
export interface DecidedWrite<T> {
  written: T | null;
  cur_status: string | null;
  cur_claim_count: number | null;
}

/**
 * One statement of a conditional write of the document `$1` and of the row it decided on:
 * `write` is an UPDATE or DELETE of documents `FROM`/`USING cur`, matching `documents.document_id
 * = cur_id` and testing its conditions on `cur_*`, whose RETURNING comes back as `written`. A
 * miss is then explained by the row as the write saw it, never by one another worker wrote after.
 */
export function decidedWrite(write: string): string {
  return `WITH ${LOCKED_ROW}, changed AS (${write})
  SELECT (SELECT to_jsonb(changed) FROM changed) AS written, cur_status, cur_claim_count FROM (VALUES (1)) AS one LEFT JOIN cur ON true`;
}

/**
 * The answer of a {@link decidedWrite}: the written row, or not_found, claim_superseded (when
 * `expectedClaimCount` no longer matched) or conflict (with the current status) thrown.
 */
export function writtenOrExplained<T>(outcome: DecidedWrite<T> | undefined, id: string, expected: string, expectedClaimCount?: number): T {
  if (outcome?.written) return outcome.written;
  if (!outcome || outcome.cur_status === null || outcome.cur_claim_count === null) throw new ToolError('not_found', `no document ${id}`);
  const { cur_status: status, cur_claim_count: claimCount } = outcome;
  if (expectedClaimCount !== undefined && claimCount !== expectedClaimCount) {
    throw new ToolError('claim_superseded', `document ${id} was claimed again (claim ${claimCount}, expected ${expectedClaimCount})`, {
      current_status: status, current_claim_count: claimCount,
    });
  }
  throw new ToolError('conflict', `document ${id} is ${status}, expected ${expected}`, { current_status: status });
}

/** Document rows: create, read, page through, update conditionally, delete. */
export const DOCUMENT_TOOLS: ToolFamily = {
  documents_create: {
    definition: {
      name: 'documents_create',
      annotations: TOOL_HINTS.documents_create,
      description: 'Record an uploaded document (status pending). conflict if the id or s3_key is already recorded.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['filename', 'content_type', 's3_key', 'size_bytes', 'sha256'],
        properties: {
          document_id: { ...SCHEMA.documentId, description: 'Optional id chosen by the caller; generated otherwise.' },
          filename: { type: 'string', minLength: 1, maxLength: 255, pattern: FILENAME },
          content_type: { type: 'string', minLength: 3, maxLength: 255, pattern: STORABLE_TEXT },
          s3_key: { type: 'string', minLength: 1, maxLength: 1024 },
          // JSON numbers are doubles: past 2^53 the value parsed is not the one sent (…993 reads as
          // …992), and would be stored as if it were.
          size_bytes: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as CreateArgs;
      const s3Key = normaliseKey(a.s3_key, deps.keys);
      const rows = await sqlQuery<DocumentRow>(
        deps,
        `INSERT INTO documents (document_id, filename, content_type, s3_key, size_bytes, sha256)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${DOCUMENT_COLUMNS}`,
        [a.document_id ?? randomUUID(), a.filename, a.content_type, s3Key, a.size_bytes, a.sha256],
      );
      return toDocument(rows[0] as DocumentRow);
    },
  },
  documents_get: {
    definition: { name: 'documents_get', description: 'Read one document.', inputSchema: idOnly, annotations: TOOL_HINTS.documents_get },
    async handler(args, deps) {
      const id = (args as unknown as IdArgs).document_id;
      const rows = await sqlQuery<DocumentRow>(deps, GET_DOCUMENT_SQL, [id], { idempotent: true });
      if (!rows[0]) throw new ToolError('not_found', `no document ${id}`);
      return toDocument(rows[0]);
    },
  },
  documents_list: {
    definition: {
      name: 'documents_list',
      annotations: TOOL_HINTS.documents_list,
      description: 'Page through documents, oldest first (stable order: created_at, then id), each without its extracted content (documents_get has it).',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        properties: {
          status: SCHEMA.status,
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 50 },
          cursor: { type: 'string', minLength: 1, maxLength: 512, description: 'next_cursor of the previous page.' },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as ListArgs;
      // ORDER BY names the table's columns: a bare name would be the output column of that name,
      // the text forms of DOCUMENT_COLUMNS, not the keyset the cursor compares against.
      const after = a.cursor === undefined ? undefined : decodeCursor(a.cursor);
      if (a.cursor !== undefined && !after) throw new ToolError('invalid_arguments', 'cursor is not one this gateway issued');
      const rows = await sqlQuery<Omit<DocumentRow, 'extracted'>>(
        deps,
        `SELECT ${LISTED_DOCUMENT_COLUMNS} FROM documents
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::timestamptz IS NULL OR (created_at, document_id) > ($2::timestamptz, $3::uuid))
         ORDER BY documents.created_at, documents.document_id LIMIT $4`,
        [a.status ?? null, after?.[0] ?? null, after?.[1] ?? null, a.limit + 1],
        { idempotent: true },
      );
      const page = rows.slice(0, a.limit);
      const last = page[page.length - 1];
      return {
        documents: page.map(toListedDocument),
        ...(rows.length > a.limit && last ? { next_cursor: encodeCursor(last) } : {}),
      };
    },
  },
  documents_update: {
    definition: {
      name: 'documents_update',
      annotations: TOOL_HINTS.documents_update,
      description:
        'Change a document; with expected_status the change applies only if the current status is one of them (else conflict), with expected_claim_count only if the document has not been claimed again since (else claim_superseded). Setting status processing stamps claimed_at and counts a claim.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['document_id'],
        anyOf: ['status', 'extracted', 'validation', 'error', 'archive_key'].map((f) => ({ required: [f] })),
        properties: {
          document_id: SCHEMA.documentId,
          ...EXPECTED,
          status: SCHEMA.status,
          extracted: { type: 'object', description: 'Extracted text and fields (JSON).' },
          validation: {
            type: 'object',
            required: ['score'],
            properties: { score: { type: 'number', minimum: 0, maximum: 1 }, failures: { type: 'array' } },
          },
          error: { type: ['string', 'null'], maxLength: 2000, pattern: STORABLE_TEXT, description: 'Failure reason; null clears it.' },
          archive_key: { type: 'string', minLength: 1, maxLength: 1024 },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as UpdateArgs;
      const params: unknown[] = [a.document_id];
      const sets: string[] = ['updated_at = clock_timestamp()'];
      const set = (column: string, value: unknown, cast = '') => {
        params.push(value);
        sets.push(`${column} = $${params.length}${cast}`);
      };
      if (a.status !== undefined) set('status', a.status);
      if (a.status === 'processing') sets.push('claimed_at = clock_timestamp()', 'claim_count = claim_count + 1');
      if (a.extracted !== undefined) set('extracted', jsonbText('extracted', a.extracted), '::jsonb');
      if (a.validation !== undefined) set('validation', jsonbText('validation', a.validation), '::jsonb');
      if (a.error !== undefined) set('error', a.error);
      if (a.archive_key !== undefined) set('archive_key', normaliseKey(a.archive_key, deps.keys));
      const expected = a.expected_status === undefined ? null : [a.expected_status].flat();
      params.push(expected, a.expected_claim_count ?? null);
      const [statusParam, claimParam] = [params.length - 1, params.length];
      // Both conditions sit in the one statement, so a claim taken between a check and the write
      // cannot slip in, and a miss is explained by the row the conditions were tested on.
      const rows = await sqlQuery<DecidedWrite<DocumentRow>>(
        deps,
        decidedWrite(`UPDATE documents SET ${sets.join(', ')} FROM cur
         WHERE documents.document_id = cur_id AND ($${statusParam}::text[] IS NULL OR cur_status = ANY($${statusParam}::text[]))
           AND ($${claimParam}::integer IS NULL OR cur_claim_count = $${claimParam}::integer)
         RETURNING ${DOCUMENT_COLUMNS}`),
        params,
      );
      return toDocument(writtenOrExplained(rows[0], a.document_id, (expected ?? []).join('|'), a.expected_claim_count));
    },
  },
  documents_delete: {
    definition: {
      name: 'documents_delete',
      annotations: TOOL_HINTS.documents_delete,
      description:
        'Delete a document and its processing logs (not its objects: delete those with s3_delete_object); with expected_status only if the current status is one of them (else conflict), with expected_claim_count only if the document has not been claimed since (else claim_superseded).',
      inputSchema: { ...idOnly, properties: { ...idOnly.properties, ...EXPECTED } },
    },
    async handler(args, deps) {
      const a = args as unknown as DeleteArgs;
      const expected = a.expected_status === undefined ? null : [a.expected_status].flat();
      // The conditions sit in the statement, as in documents_update: a claim taken between the
      // caller's read and this delete leaves the row in place.
      const rows = await sqlQuery<DecidedWrite<{ document_id: string }>>(
        deps,
        decidedWrite(`DELETE FROM documents USING cur
         WHERE documents.document_id = cur_id AND ($2::text[] IS NULL OR cur_status = ANY($2::text[])) AND ($3::integer IS NULL OR cur_claim_count = $3::integer)
         RETURNING document_id::text AS document_id`),
        [a.document_id, expected, a.expected_claim_count ?? null],
      );
      writtenOrExplained(rows[0], a.document_id, (expected ?? []).join('|'), a.expected_claim_count);
      return { document_id: a.document_id, deleted: true };
    },
  },
};
