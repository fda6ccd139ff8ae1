import { ToolError } from '../errors.js';
import { STORABLE_TEXT, SCHEMA, isoText } from './document-rows.js';
import { sqlQuery } from './sql-run.js';
import type { ToolFamily } from './tool-types.js';
import { TOOL_HINTS } from './tool-hints.js';

/** Outcomes a pipeline step may log. */
export const LOG_STATUSES = ['started', 'succeeded', 'failed', 'skipped', 'info'] as const;

interface AppendArgs { document_id: string; step: string; status: string; message?: string }
interface ListArgs { document_id: string; limit: number; order: 'oldest_first' | 'newest_first' }
interface LogRow { log_id: string | number; document_id: string; step: string; status: string; message: string | null; created_at: string }

/** A row of a LEFT JOIN that matched nothing. */
type NullRow<T> = { [K in keyof T]: null };

const LOG_COLUMNS = `log_id::float8 AS log_id, document_id::text AS document_id, step, status, message, ${isoText('created_at')}`;

const toEntry = (r: LogRow) => ({
  log_id: Number(r.log_id),
  document_id: r.document_id,
  step: r.step,
  status: r.status,
  message: r.message,
  created_at: r.created_at,
});

/** The append-only processing log of each document. */
export const PROCESSING_LOG_TOOLS: ToolFamily = {
  processing_logs_append: {
    definition: {
      name: 'processing_logs_append',
      annotations: TOOL_HINTS.processing_logs_append,
      description: 'Append one entry to a document\'s processing log; not_found if the document does not exist.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['document_id', 'step', 'status'],
        properties: {
          document_id: SCHEMA.documentId,
          step: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,63}$', description: 'e.g. upload, extract, validate, archive.' },
          status: { type: 'string', enum: LOG_STATUSES },
          message: { type: 'string', maxLength: 2000, pattern: STORABLE_TEXT },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as AppendArgs;
      // A missing document surfaces as a foreign-key violation, mapped to not_found.
      const rows = await sqlQuery<LogRow>(
        deps,
        `INSERT INTO processing_logs (document_id, step, status, message) VALUES ($1, $2, $3, $4) RETURNING ${LOG_COLUMNS}`,
        [a.document_id, a.step, a.status, a.message ?? null],
      );
      return toEntry(rows[0] as LogRow);
    },
  },
  processing_logs_list: {
    definition: {
      name: 'processing_logs_list',
      annotations: TOOL_HINTS.processing_logs_list,
      description: 'A document\'s processing log, oldest entry first; with order newest_first, the latest entries first (the last `limit` of a long log).',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['document_id'],
        properties: {
          document_id: SCHEMA.documentId,
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
          order: { type: 'string', enum: ['oldest_first', 'newest_first'], default: 'oldest_first' },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as ListArgs;
      const order = a.order === 'newest_first' ? 'DESC' : 'ASC';
      // One statement finds the document and reads its log, from one snapshot: no row, no
      // document; a row of nulls, a document with an empty log. Two statements would answer an
      // empty log for a document deleted between them.
      const rows = await sqlQuery<LogRow | NullRow<LogRow>>(
        deps,
        `SELECT entry.* FROM documents
         LEFT JOIN LATERAL (SELECT ${LOG_COLUMNS} FROM processing_logs
           WHERE processing_logs.document_id = documents.document_id ORDER BY log_id ${order} LIMIT $2) AS entry ON true
         WHERE documents.document_id = $1 ORDER BY entry.log_id ${order}`,
        [a.document_id, a.limit],
        { idempotent: true },
      );
      if (rows.length === 0) throw new ToolError('not_found', `no document ${a.document_id}`);
      return { entries: rows.filter((r): r is LogRow => r.log_id !== null).map(toEntry) };
    },
  },
};
