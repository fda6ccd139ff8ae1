import { createHash } from 'node:crypto';
import type { DocumentRecord, StoredObject } from '../shared/documents.js';
import { asAgentError, type EgressClient } from '../shared/egress-client.js';
import type { MethodHandler } from '../shared/jsonrpc-server.js';
import { AgentError } from '../shared/rpc-errors.js';
import { assertClaimCurrent, claimFence, stepClaim, writeOrRecorded } from '../shared/step-claim.js';
import { evaluate, rejectionReason, type ValidationReport } from './evaluate.js';
import { stepKey } from '../shared/admission.js';
import { DEFAULT_MAX_DOCUMENTS, documentSlots, type DocumentHolderOptions } from '../shared/document-slots.js';
import type { AgentMetrics } from '../shared/metrics.js';

/**
 * The verdict recorded on a document, a rejection included, for a repeat of validate_document. A
 * document failed with a passing report failed at a later step: that is not a verdict.
 */
function recordedVerdict(doc: DocumentRecord): Record<string, unknown> | undefined {
  const report = doc.validation as unknown as ValidationReport | null;
  if (report === null) return undefined;
  if (doc.status === 'validated') return { document_id: doc.document_id, status: doc.status, reused: true, ...report };
  if (doc.status === 'failed' && !report.passed) return { document_id: doc.document_id, status: doc.status, error: doc.error, reused: true, ...report };
  return undefined;
}

/** The validator's methods. */
export function validatorHandlers(egress: EgressClient, metrics: Pick<AgentMetrics, 'documentAdmissions' | 'documentsHeld'>, opts: DocumentHolderOptions = {}): Record<string, MethodHandler> {
  const slots = documentSlots('validator', opts.maxDocuments ?? DEFAULT_MAX_DOCUMENTS, metrics);
  return {
    async validate_document(params) {
      const claim = stepClaim(params);
      const { documentId } = claim;
      try {
        const doc = await egress.callTool<DocumentRecord>('documents_get', { document_id: documentId });
        assertClaimCurrent(claim, doc);
        // A retry after the verdict was recorded (its answer lost on the way) gets the recorded
        // verdict, a rejection included: a conflict would tell the run someone else had moved the
        // document on.
        const reused = recordedVerdict(doc);
        if (reused !== undefined) return reused;
        if (doc.status !== 'extracted' || doc.extracted === null) {
          throw new AgentError('conflict', `document ${documentId} is ${doc.status}; only an extracted document is validated`, { current_status: doc.status });
        }
        const extracted = doc.extracted;
        // A slot is taken before the object is fetched: its bytes are what the bound holds.
        return await slots.run(stepKey(documentId, claim.claimCount), async () => {
          // Read the object back: the hash rule compares what is stored now with what was uploaded.
          const object = await egress.callTool<StoredObject>('s3_get_object', { key: doc.s3_key });
          const bytes = Buffer.from(object.content_base64, 'base64');
          const report = evaluate({
            document: doc,
            extracted,
            objectSha256: createHash('sha256').update(bytes).digest('hex'),
            objectSize: bytes.length,
          });
          const verdict = report.passed ? { status: 'validated' } : { status: 'failed', error: rejectionReason(report) };
          return await writeOrRecorded(egress, claim, async () => {
            await egress.callTool('documents_update', { document_id: documentId, expected_status: 'extracted', ...claimFence(claim), validation: report, ...verdict });
            return { document_id: documentId, reused: false, ...verdict, ...report };
          }, recordedVerdict);
        });
      } catch (error) {
        throw asAgentError(error);
      }
    },
  };
}
