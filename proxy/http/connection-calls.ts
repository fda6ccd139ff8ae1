import type { Socket } from 'node:net';

/** A call made for a client, which that client's leaving ends. */
export interface UnderWay {
  clientLeft(): void;
}

/**
 * The calls under way per client connection, which its closing ends. Watched on the connection,
 * not on each answer: Node closes only the answer it is writing, not the ones queued behind it for
 * pipelined requests, whose calls went on for no one (an answer larger than the client's buffer
 * then waited for ever for a drain, holding its upstream connection).
 */
export class ConnectionCalls {
  readonly #open = new WeakMap<Socket, Set<UnderWay>>();

  /** The calls under way on `socket`, a set the caller adds its call to and deletes it from when done. */
  on(socket: Socket): Set<UnderWay> {
    let open = this.#open.get(socket);
    if (open === undefined) {
      const calls = new Set<UnderWay>();
      socket.once('close', () => {
        for (const call of calls) call.clientLeft();
      });
      this.#open.set(socket, calls);
      open = calls;
    }
    return open;
  }
}
