import type { Socket } from 'node:net';

/** A call made for a client, which that client's leaving ends. */
export interface UnderWay {
  clientLeft(): void;
}

/**
 * Whether the client has left: its connection closed, or it sent its FIN (a half-close). Node's
 * server (without httpAllowHalfOpen) ends the connection at the client's FIN, whatever is still to
 * be answered on it: no answer can reach that client any more. The socket is destroyed only once
 * Node's own end has gone out, a turn or more later (much later when answer bytes wait for a
 * client that reads nothing), so `destroyed` alone let a call be sent meanwhile, for no one.
 */
export function clientGone(socket: Socket): boolean {
  return socket.destroyed || socket.readableEnded;
}

/**
 * The calls under way per client connection, which its closing (or the client's FIN: see
 * clientGone) ends. Watched on the connection, not on each answer: Node closes only the answer it
 * is writing, not the ones queued behind it for pipelined requests, whose calls went on for no
 * one (an answer larger than the client's buffer then waited for ever for a drain, holding its
 * upstream connection).
 */
export class ConnectionCalls {
  readonly #open = new WeakMap<Socket, Set<UnderWay>>();

  /** The calls under way on `socket`, a set the caller adds its call to and deletes it from when done. */
  on(socket: Socket): Set<UnderWay> {
    let open = this.#open.get(socket);
    if (open === undefined) {
      const calls = new Set<UnderWay>();
      const leave = (): void => {
        socket.off('end', leave);
        socket.off('close', leave);
        for (const call of calls) call.clientLeft();
      };
      socket.once('end', leave);
      socket.once('close', leave);
      this.#open.set(socket, calls);
      open = calls;
    }
    return open;
  }
}
