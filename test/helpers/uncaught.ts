/**
 * Runs `body` and resolves with the errors that went uncaught meanwhile: each would have ended a
 * sidecar running as its own process. Watched with the monitor event, which changes nothing else.
 */
export async function uncaughtDuring(body: () => Promise<void>): Promise<unknown[]> {
  const uncaught: unknown[] = [];
  const monitor = (error: unknown): void => {
    uncaught.push(error);
  };
  process.on('uncaughtExceptionMonitor', monitor);
  try {
    await body();
  } finally {
    process.off('uncaughtExceptionMonitor', monitor);
  }
  return uncaught;
}
