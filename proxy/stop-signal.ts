/**
 * Resolves with the first SIGINT or SIGTERM. Call it before starting anything: a signal that
 * arrives while the command starts, or just after it has said it is ready, is then kept and
 * answered once the start is over, instead of finding no listener and killing the process with
 * nothing closed (a supervisor or a test sends SIGTERM as soon as it reads "ready"; the listener
 * used to be added a moment later). The listeners stay for the life of the process: a
 * second signal while the command drains (npm forwarding SIGTERM as its own orphan check sends
 * one, a supervisor repeating it, Ctrl-C pressed twice) is ignored, where a listener added with
 * `once` would be gone and the signal's default action would kill the process mid-drain, losing
 * the in-flight requests and the last log lines.
 */
export function stopSignal(): Promise<'SIGINT' | 'SIGTERM'> {
  return new Promise((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => resolve(signal));
  });
}
