import { setTimeout as sleep } from 'node:timers/promises';
import { callTool } from '../../mcp/helpers.js';
import { startAgentStack, type AgentStack, type RpcAnswer } from './agent-stack.js';
import { startGatewayStandIn } from './gateway-stand-in.js';

/** One held object read: resolves `asked` once an agent asked for it; `release()` lets it through. */
export interface HeldRead {
  readonly asked: Promise<void>;
  release(): void;
}

/** A gateway stand-in that counts each object's reads and can hold the next read of one. */
export interface HoldingGateway {
  readonly url: string;
  /** s3_get_object calls so far, by key. */
  readonly reads: Map<string, number>;
  /** Holds the reads of `key` (any key when undefined) until released: the step reading it keeps its slot. */
  hold(key?: string): HeldRead;
  /** Holds the reads of a document's stored file (its s3_key), named in the answer. */
  holdObjectOf(documentId: string): Promise<HeldRead & { readonly key: string }>;
  close(): void;
}

/** Starts a {@link HoldingGateway} before the stack's real gateway. */
export async function startHoldingGateway(stack: AgentStack): Promise<HoldingGateway> {
  const reads = new Map<string, number>();
  let held: { key: string | undefined; reached: () => void; release: Promise<void> } | undefined;
  const gateway = await startGatewayStandIn(stack, async (call) => {
    const key = call.arguments['key'];
    if (call.tool !== 's3_get_object' || typeof key !== 'string') return false;
    reads.set(key, (reads.get(key) ?? 0) + 1);
    const now = held;
    if (now !== undefined && (now.key === undefined || now.key === key)) {
      now.reached();
      await now.release;
    }
    return false;
  });
  const hold = (key?: string): HeldRead => {
    let reached!: () => void;
    let release!: () => void;
    const asked = new Promise<void>((resolve) => (reached = resolve));
    held = { key, reached, release: new Promise<void>((resolve) => (release = resolve)) };
    return { asked, release: () => { held = undefined; release(); } };
  };
  return {
    url: gateway.url,
    reads,
    hold,
    async holdObjectOf(documentId) {
      const key = String((await callTool(stack.gateway.url, 'documents_get', { document_id: documentId })).body['s3_key']);
      return { key, ...hold(key) };
    },
    close: () => gateway.close(),
  };
}

/** An agent stack whose agents reach the gateway through a {@link HoldingGateway}. */
export async function startHoldingStack(options: Parameters<typeof startAgentStack>[0]): Promise<{ stack: AgentStack; gateway: HoldingGateway; close(): Promise<void> }> {
  const stack = await startAgentStack(options);
  const gateway = await startHoldingGateway(stack);
  stack.routeGatewayTo(gateway.url);
  return {
    stack,
    gateway,
    async close() {
      gateway.close();
      await stack.close();
    },
  };
}

/** Resolves once `condition` holds, or rejects with what `answered` resolved to first (it must not have). */
export async function until(condition: () => Promise<boolean>, answered: Promise<RpcAnswer>): Promise<void> {
  let early: RpcAnswer | undefined;
  void answered.then((a) => (early = a));
  while (!(await condition())) {
    if (early !== undefined) throw new Error(`answered before it should have: ${JSON.stringify(early)}`);
    await sleep(10);
  }
}
