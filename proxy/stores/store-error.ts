/** The error every shared store throws when its backend cannot answer. Match on `.code`. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';

  constructor(store: string, cause: unknown) {
    super(`${store} store unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StoreUnavailableError';
  }
}

/** True for an error thrown by a store whose backend is unreachable. */
export function isStoreUnavailable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'STORE_UNAVAILABLE';
}
