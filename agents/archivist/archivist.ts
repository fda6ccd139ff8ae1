import { documentSummary, type DocumentPage, type DocumentRecord, type StoredObject } from '../shared/documents.js';
import { asAgentError, isEgressError, type EgressClient } from '../shared/egress-client.js';
import type { MethodHandler } from '../shared/jsonrpc-server.js';
import { AgentError } from '../shared/rpc-errors.js';
import { assertClaimCurrent, claimFence, stepClaim } from '../shared/step-claim.js';
import { stepKey } from '../shared/admission.js';
import { DEFAULT_MAX_DOCUMENTS, documentSlots, type DocumentHolderOptions } from '../shared/document-slots.js';
import type { AgentMetrics } from '../shared/metrics.js';

const DEFAULT_PAGE = 20;

/** The fixed archive key of a document: archiving twice overwrites one copy, never adds a second. */
export function archiveKeyFor(doc: Pick<DocumentRecord, 'document_id' | 's3_key'>): string {
  const name = doc.s3_key.slice(doc.s3_key.lastIndexOf('/') + 1);
  return `archive/${doc.document_id}/${name}`;
}

async function deleteIfPresent(egress: EgressClient, key: string | null): Promise<boolean> {
  if (key === null) return false;
  try {
    await egress.callTool('s3_delete_object', { key });
    return true;
  } catch (error) {
    if (isEgressError(error) && error.kind === 'remote' && error.code === 'not_found') return false;
    throw error;
  }
}

/** Runs a handler body, turning dependency failures into the agent's errors. */
async function guarded<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw asAgentError(error);
  }
}

/** The archivist's methods. */
export function archivistHandlers(egress: EgressClient, metrics: Pick<AgentMetrics, 'documentAdmissions' | 'documentsHeld'>, opts: DocumentHolderOptions = {}): Record<string, MethodHandler> {
  const slots = documentSlots('archivist', opts.maxDocuments ?? DEFAULT_MAX_DOCUMENTS, metrics);
  const getDocument = (id: string) => egress.callTool<DocumentRecord>('documents_get', { document_id: id });
  return {
    archive_document: (params) => guarded(async () => {
      const claim = stepClaim(params);
      const { documentId } = claim;
      const doc = await getDocument(documentId);
      assertClaimCurrent(claim, doc);
      if (doc.status === 'archived' && doc.archive_key !== null) {
        return { ...documentSummary(doc), reused: true };
      }
      if (doc.status !== 'validated') {
        throw new AgentError('conflict', `document ${documentId} is ${doc.status}; only a validated document is archived`, { current_status: doc.status });
      }
      // A slot is taken before the object is fetched: its copies are what the bound holds.
      return slots.run(stepKey(documentId, claim.claimCount), async () => {
        const object = await egress.callTool<StoredObject>('s3_get_object', { key: doc.s3_key });
        const archiveKey = archiveKeyFor(doc);
        // expected_status makes both writes conditional: a concurrent archive of the same document
        // lands on the same key and the same row, so there is still one archive entry.
        const fenced = { document_id: documentId, expected_status: ['validated', 'archived'], ...claimFence(claim), error: null };
        // The claim once more, just before the copy (the step's one write outside the row), by a
        // write under the final one's conditions: a run taken over while the object was read (a
        // large file, a slow bucket) copies nothing. The bucket and the row share no transaction, so
        // a takeover between this write and the copy still lets it through; but this write restarts
        // the document's stale window (updated_at: nothing takes a validated document over before it
        // has passed, 120 s by default), and such a late copy is what the run that took over writes
        // to the same key.
        await egress.callTool('documents_update', fenced);
        await egress.callTool('s3_put_object', { key: archiveKey, content_base64: object.content_base64, content_type: object.content_type });
        const archived = await egress.callTool<DocumentRecord>('documents_update', { ...fenced, status: 'archived', archive_key: archiveKey });
        return { ...documentSummary(archived), reused: false };
      });
    }),
    get_document: (params) => guarded(async () => getDocument(params['document_id'] as string)),
    list_documents: (params) => guarded(async () => {
      const args: Record<string, unknown> = { limit: (params['limit'] as number | undefined) ?? DEFAULT_PAGE };
      if (typeof params['cursor'] === 'string') args['cursor'] = params['cursor'];
      const page = await egress.callTool<DocumentPage>('documents_list', args);
      return {
        documents: page.documents.map(documentSummary),
        ...(page.next_cursor === undefined ? {} : { next_cursor: page.next_cursor }),
      };
    }),
    delete_document: (params) => guarded(async () => {
      const documentId = params['document_id'] as string;
      const doc = await getDocument(documentId);
      if (doc.status === 'processing' || doc.status === 'extracted' || doc.status === 'validated') {
        throw new AgentError('conflict', `document ${documentId} is being processed; delete it once it is archived or failed`, { current_status: doc.status });
      }
      // Objects first: a failure leaves the row, so the delete can be retried and nothing is orphaned.
      // Only the document's own objects: its upload under uploads/<document_id>/ and the archive
      // copy this agent names (archiveKeyFor), whatever keys the row holds. The row is written by
      // other identities, and must not choose what gets deleted.
      const removed = [];
      if (doc.s3_key.startsWith(`uploads/${documentId}/`) && (await deleteIfPresent(egress, doc.s3_key))) removed.push(doc.s3_key);
      const archiveKey = archiveKeyFor(doc);
      if (archiveKey !== doc.s3_key && (await deleteIfPresent(egress, archiveKey))) removed.push(archiveKey);
      // Only as read above: a document claimed since (a pending one taken up by a run) is not
      // deleted under that run; the caller is told what moved it on and which objects went.
      try {
        await egress.callTool('documents_delete', { document_id: documentId, expected_status: doc.status, expected_claim_count: doc.claim_count });
      } catch (error) {
        if (!isEgressError(error) || error.kind !== 'remote' || (error.code !== 'conflict' && error.code !== 'claim_superseded')) throw error;
        const now = error.data?.['current_status'];
        throw new AgentError('conflict', `document ${documentId} moved on while it was being deleted (now ${String(now)}); it was not deleted`, {
          current_status: now, objects_deleted: removed,
        });
      }
      return { document_id: documentId, deleted: true, objects_deleted: removed };
    }),
  };
}
