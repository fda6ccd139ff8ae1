/**
 * Storage for oidc-provider's few persisted models. With JWT access tokens and only the
 * client_credentials grant, that is just DPoP proof replay detection (`ReplayDetection`), so a
 * bounded in-process map is enough. oidc-provider's own MemoryAdapter would do, but it shares one
 * module-wide store between providers (tests run several) and warns on every start.
 */

type Payload = Record<string, unknown>;

interface Entry {
  readonly payload: Payload;
  readonly expiresAt: number;
}

/** Entries beyond this evict the oldest: a flood of proofs must not grow memory without bound. */
const MAX_ENTRIES = 10_000;

/** Returns an oidc-provider adapter factory whose adapters share one private store. */
export function createMemoryAdapterFactory(now: () => number = Date.now): (modelName: string) => object {
  const store = new Map<string, Entry>();

  function live(key: string): Payload | undefined {
    const entry = store.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  return (modelName: string) => {
    const keyOf = (id: string): string => `${modelName}:${id}`;
    return {
      async upsert(id: string, payload: Payload, expiresIn: number): Promise<void> {
        if (store.size >= MAX_ENTRIES) {
          const oldest = store.keys().next();
          if (oldest.done !== true) store.delete(oldest.value);
        }
        store.set(keyOf(id), { payload, expiresAt: now() + expiresIn * 1000 });
      },
      async find(id: string): Promise<Payload | undefined> {
        return live(keyOf(id));
      },
      async findByUserCode(): Promise<undefined> {
        return undefined;
      },
      async findByUid(): Promise<undefined> {
        return undefined;
      },
      async consume(id: string): Promise<void> {
        const payload = live(keyOf(id));
        if (payload !== undefined) payload['consumed'] = Math.floor(now() / 1000);
      },
      async destroy(id: string): Promise<void> {
        store.delete(keyOf(id));
      },
      async revokeByGrantId(): Promise<void> {},
    };
  };
}
