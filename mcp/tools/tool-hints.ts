/**
 * What an MCP client may assume of each tool (MCP `ToolAnnotations`, published in tools/list).
 * No tool reaches outside the gateway's own database and bucket, so none is open-world. Kept apart
 * from the tools' handlers so that the agents can read it without loading the gateway's backends:
 * they retry a failed hop only for a read-only tool (agents/shared/egress-client.ts).
 */
export interface ToolHints {
  /** Changes nothing. */
  readonly readOnlyHint: boolean;
  /** May overwrite or delete what is there (meaningful when not read-only). */
  readonly destructiveHint: boolean;
  /** Calling again with the same arguments changes nothing more (meaningful when not read-only). */
  readonly idempotentHint: boolean;
  readonly openWorldHint: false;
}

const READS: ToolHints = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const ADDS: ToolHints = { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false };
const REPLACES: ToolHints = { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false };
const CHANGES: ToolHints = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false };

export const TOOL_HINTS = {
  s3_list_objects: READS,
  s3_get_object: READS,
  s3_put_object: REPLACES,
  s3_delete_object: REPLACES,
  documents_create: ADDS,
  documents_get: READS,
  documents_list: READS,
  // Guarded by expected_status: the same call again is refused with conflict.
  documents_update: CHANGES,
  documents_delete: REPLACES,
  // Move a document to processing: the same call again is refused with conflict.
  documents_claim: ADDS,
  documents_claim_stale: ADDS,
  processing_logs_append: ADDS,
  processing_logs_list: READS,
} as const satisfies Readonly<Record<string, ToolHints>>;

/** Whether a tool changes nothing, so a call whose answer was lost may be made again. */
export function isReadOnlyTool(name: string): boolean {
  return Object.hasOwn(TOOL_HINTS, name) && TOOL_HINTS[name as keyof typeof TOOL_HINTS].readOnlyHint;
}
