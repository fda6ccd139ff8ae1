import type { RpcAnswer, RpcClient } from './rpc-client.js';
import type { Sample } from './samples.js';

/** What happened to one sample. */
export interface SampleOutcome {
  readonly filename: string;
  readonly documentId: string | undefined;
  readonly status: string;
  readonly score: number | undefined;
  readonly error: string | undefined;
  /** Found from an earlier run (same content hash and name) rather than uploaded now. */
  readonly reused: boolean;
}

/** A request the policy refused, to show the policy at work. */
export interface Refusal {
  readonly who: string;
  readonly what: string;
  readonly status: number;
  readonly reason: string;
  readonly message: string;
}

/** Sidecar URLs of the services the samples go through. */
export interface SampleTargets {
  readonly orchestrator: string;
  readonly archivist: string;
}

interface ListedDocument { document_id: string; filename: string; sha256: string; status: string }

function describe(answer: RpcAnswer): string {
  return answer.error === undefined ? `HTTP ${answer.status}` : `${answer.error.message} (${String(answer.error.data?.['reason'] ?? answer.error.code)})`;
}

/** Every document, through the archivist's paged list (as a caller allowed to list). */
async function listAll(client: RpcClient, archivist: string): Promise<ListedDocument[]> {
  const all: ListedDocument[] = [];
  let cursor: string | undefined;
  do {
    const answer = await client.call(archivist, 'list_documents', cursor === undefined ? { limit: 100 } : { limit: 100, cursor });
    if (answer.result === undefined) throw new Error(`list_documents: ${describe(answer)}`);
    all.push(...(answer.result['documents'] as ListedDocument[]));
    cursor = answer.result['next_cursor'] as string | undefined;
  } while (cursor !== undefined);
  return all;
}

function outcomeOf(filename: string, result: Record<string, unknown>, reused: boolean): SampleOutcome {
  const score = result['validation_score'];
  return {
    filename,
    documentId: String(result['document_id']),
    status: String(result['status']),
    score: typeof score === 'number' ? score : undefined,
    error: typeof result['error'] === 'string' ? result['error'] : undefined,
    reused,
  };
}

/**
 * Uploads (as `submitter`) each sample not already recorded, processes what is pending or failed,
 * and reports the final state of each. A sample is recognised by content hash and name, so a
 * second `up` on the same data directory adds no document. Once `signal` is aborted, no further
 * sample is started.
 */
export async function runSamples(
  samples: readonly Sample[], targets: SampleTargets, clients: { submitter: RpcClient; reader: RpcClient },
  progress: (line: string) => void, signal?: AbortSignal,
): Promise<SampleOutcome[]> {
  const known = await listAll(clients.reader, targets.archivist);
  const outcomes: SampleOutcome[] = [];
  for (const sample of samples) {
    // Stopping: the sample under way finishes, no other starts.
    if (signal?.aborted === true) break;
    const previous = known.find((doc) => doc.sha256 === sample.sha256 && doc.filename === sample.filename);
    let documentId = previous?.document_id;
    if (documentId === undefined) {
      const uploaded = await clients.submitter.call(targets.orchestrator, 'upload_document', {
        filename: sample.filename, content_type: sample.contentType, content_base64: sample.bytes.toString('base64'),
      });
      if (uploaded.result === undefined) {
        outcomes.push({ filename: sample.filename, documentId: undefined, status: 'upload refused', score: undefined, error: describe(uploaded), reused: false });
        continue;
      }
      documentId = String(uploaded.result['document_id']);
      progress(`uploaded ${sample.filename} → ${documentId}`);
    }
    const reused = previous !== undefined;
    if (previous !== undefined && previous.status !== 'pending' && previous.status !== 'failed') {
      const current = await clients.reader.call(targets.archivist, 'get_document', { document_id: documentId });
      const doc = current.result ?? {};
      const validation = doc['validation'] as { score?: number } | null | undefined;
      outcomes.push(outcomeOf(sample.filename, { ...doc, validation_score: validation?.score }, true));
      continue;
    }
    const processed = await clients.submitter.call(targets.orchestrator, 'process_document', { document_id: documentId });
    if (processed.result === undefined) {
      outcomes.push({ filename: sample.filename, documentId, status: 'not processed', score: undefined, error: describe(processed), reused });
      continue;
    }
    progress(`processed ${sample.filename}: ${String(processed.result['status'])}`);
    outcomes.push(outcomeOf(sample.filename, processed.result, reused));
  }
  return outcomes;
}

/** Has `client` try a call the policy does not grant it, and reports the refusal. */
export async function demonstrateRefusal(client: RpcClient, sidecarUrl: string, method: string, params: Record<string, unknown>): Promise<Refusal> {
  const answer = await client.call(sidecarUrl, method, params);
  return {
    who: client.clientId,
    what: method,
    status: answer.status,
    reason: String(answer.error?.data?.['reason'] ?? (answer.error ? answer.error.code : 'none: it was allowed')),
    message: answer.error?.message ?? 'allowed',
  };
}
