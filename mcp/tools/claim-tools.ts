import { DOCUMENT_COLUMNS, LISTED_DOCUMENT_COLUMNS, SCHEMA, toDocument, toListedDocument } from './document-rows.js';
import type { DocumentRow } from './document-rows.js';
import { decidedWrite, writtenOrExplained } from './document-tools.js';
import type { DecidedWrite } from './document-tools.js';
import { sqlQuery } from './sql-run.js';
import type { ToolFamily } from './tool-types.js';
import { TOOL_HINTS } from './tool-hints.js';

interface ClaimArgs { document_id: string; stale_after_seconds?: number }
interface SweepArgs { older_than_seconds: number; limit: number }

/**
 * When a run has stalled, `secs` the window and `column` naming the row's columns: no progress for
 * the window, by the database's clock, in processing since its claim or between steps
 * (extracted, validated) since its last change. Every write of a live run (a step's result, the
 * archivist's claim re-check) stamps updated_at, so a run that wrote within the window is live.
 */
function stalled(secs: string, column = (name: string) => name): string {
  const cutoff = `clock_timestamp() - make_interval(secs => ${secs}::float8)`;
  return `(${column('status')} = 'processing' AND ${column('claimed_at')} < ${cutoff})
    OR (${column('status')} IN ('extracted', 'validated') AND ${column('updated_at')} < ${cutoff})`;
}

// One statement decides and writes, so of two workers racing for a document exactly one gets
// the row back; the other gets the status that refused it, in a conflict. Staleness is tested on
// the locked row, so a write the live run made after the caller read the document counts.
const CLAIM_SQL = decidedWrite(`UPDATE documents
  SET status = 'processing', claimed_at = clock_timestamp(), claim_count = claim_count + 1,
      updated_at = clock_timestamp()
  FROM cur
  WHERE documents.document_id = cur_id
    AND (cur_status IN ('pending', 'failed')
         OR ($2::float8 IS NOT NULL AND (${stalled('$2', (name) => `cur_${name}`)})))
  RETURNING ${DOCUMENT_COLUMNS}`);

// SKIP LOCKED lets concurrent sweepers split the stalled documents instead of queueing on them,
// and the outer condition is re-checked on the locked row version, so a run that moved on
// meanwhile is left alone. The pick is a MATERIALIZED CTE, run once: as an IN subquery the
// planner could run it again per row, and SKIP LOCKED then passed over the row just claimed and
// picked the next, past the limit.
// Each document is returned without `extracted`, as documents_list does: a run stalled between
// steps holds its extraction (up to the request body cap, 14 MiB by default), and a sweep of 100
// carried them all into the gateway's memory at once.
const STALLED = stalled('$1');
const SWEEP_SQL = `WITH picked AS MATERIALIZED (
      SELECT document_id FROM documents WHERE ${STALLED}
      ORDER BY CASE WHEN status = 'processing' THEN claimed_at ELSE updated_at END LIMIT $2 FOR UPDATE SKIP LOCKED)
  UPDATE documents
  SET status = 'processing', claimed_at = clock_timestamp(), claim_count = claim_count + 1, updated_at = clock_timestamp()
  WHERE document_id IN (SELECT document_id FROM picked)
    AND (${STALLED})
  RETURNING ${LISTED_DOCUMENT_COLUMNS}`;

/** Claims for the pipeline workers: take one document, or re-take documents whose claim went stale. */
export const CLAIM_TOOLS: ToolFamily = {
  documents_claim: {
    definition: {
      name: 'documents_claim',
      annotations: TOOL_HINTS.documents_claim,
      description:
        'Atomically move a pending or failed document to processing (stamping claimed_at); with stale_after_seconds also re-take one whose run stalled for longer than that, by the database\'s clock (in processing since its claim, or in extracted or validated since its last change). conflict when another worker holds it.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['document_id'],
        properties: {
          document_id: SCHEMA.documentId,
          stale_after_seconds: { type: 'number', minimum: 0, maximum: 604800 },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as ClaimArgs;
      const rows = await sqlQuery<DecidedWrite<DocumentRow>>(deps, CLAIM_SQL, [a.document_id, a.stale_after_seconds ?? null]);
      const expected = a.stale_after_seconds === undefined ? 'pending|failed' : `pending|failed or stalled for ${a.stale_after_seconds} s`;
      return toDocument(writtenOrExplained(rows[0], a.document_id, expected));
    },
  },
  documents_claim_stale: {
    definition: {
      name: 'documents_claim_stale',
      annotations: TOOL_HINTS.documents_claim_stale,
      description:
        'Sweep: re-claim up to limit documents whose run stalled for longer than older_than_seconds (in processing since their claim, or in extracted or validated since their last change), longest stalled first: each is moved to processing with a fresh claim and returned without its extracted content (documents_get has it).',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['older_than_seconds'],
        properties: {
          older_than_seconds: { type: 'number', minimum: 0, maximum: 604800 },
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 10 },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as SweepArgs;
      const rows = await sqlQuery<Omit<DocumentRow, 'extracted'>>(deps, SWEEP_SQL, [a.older_than_seconds, a.limit]);
      return { documents: rows.map(toListedDocument) };
    },
  },
};
