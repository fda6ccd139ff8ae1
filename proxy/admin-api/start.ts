import type { Server } from 'node:http';
import type { DestinationStream } from 'pino';
import { isLoopbackListen, listen } from '../listen.js';
import { AuditLog } from '../observe/audit.js';
import { createLogger } from '../observe/logger.js';
import { openRevocationBackend, type StoreOptions } from '../stores/backends.js';
import { Revoker } from '../stores/revoker.js';
import { auditRevocation } from '../stores/sidecar-stores.js';
import { createAdminApi } from './server.js';

export interface AdminApiOptions {
  /** HOST:PORT (default 127.0.0.1:9005, where the admin sidecar's policy forwards). */
  readonly listen?: string;
  readonly stores: StoreOptions;
  readonly logDestination?: DestinationStream;
}

export interface AdminApi {
  readonly url: string;
  readonly revoker: Revoker;
  close(): Promise<void>;
}

/** Starts the admin API on the stores the options select (the sidecars' stores). */
export async function startAdminApi(options: AdminApiOptions): Promise<AdminApi> {
  const address = options.listen ?? '127.0.0.1:9005';
  // Anyone who reaches it may revoke every token and name themselves in revoked_by.
  if (!isLoopbackListen(address)) throw new Error(`the admin API must listen on a loopback address, not '${address}': its sidecar is its only door`);
  const logger = createLogger({ service: 'admin-api', destination: options.logDestination });
  const audit = new AuditLog(logger);
  const backend = await openRevocationBackend(options.stores, (store, error) => {
    logger.error({ event_type: 'store_failure', store, err: error.message }, `${store} error`);
  });
  const revoker = new Revoker({
    store: backend.store,
    bus: backend.bus,
    onRevoked: (result) => auditRevocation(audit, result),
    onPushError: (error) => logger.warn({ event_type: 'store_failure', store: 'revocation_push', err: (error as Error).message }, 'revocation durable but not pushed; sidecars pick it up at their next resync'),
  });
  const server: Server = createAdminApi({
    revoker,
    store: backend.store,
    logger,
  });
  let bound;
  try {
    bound = await listen(server, address);
  } catch (error) {
    await backend.close();
    throw error;
  }
  logger.info({ event_type: 'admin_api_started', listen: bound.url, durable: backend.describe.durable, shared: backend.describe.shared }, 'admin API ready');
  return {
    url: bound.url,
    revoker,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await backend.close();
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
    },
  };
}
