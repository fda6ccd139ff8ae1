/** Freezes a policy graph, Maps and Sets included (their mutators are replaced by throwers). */
export function deepFreeze<T>(value: T, seen = new WeakSet<object>()): T {
  if (typeof value !== 'object' || value === null || seen.has(value)) return value;
  if (typeof (value as { test?: unknown }).test === 'function' && value instanceof RegExp) return value;
  seen.add(value);
  if (value instanceof Map) {
    for (const [k, v] of value) {
      deepFreeze(k, seen);
      deepFreeze(v, seen);
    }
    lockCollection(value, ['set', 'delete', 'clear']);
  } else if (value instanceof Set) {
    for (const v of value) deepFreeze(v, seen);
    lockCollection(value, ['add', 'delete', 'clear']);
  } else if (typeof value === 'function') {
    // Compiled ajv validators carry mutable `errors`; they are functions, leave them be.
    return value;
  } else {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key], seen);
  }
  return Object.freeze(value);
}

function lockCollection(collection: object, methods: readonly string[]): void {
  for (const method of methods) {
    Object.defineProperty(collection, method, {
      value: () => {
        throw new TypeError('policy objects are frozen');
      },
    });
  }
}
