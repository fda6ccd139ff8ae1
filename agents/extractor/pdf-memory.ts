/**
 * The PDF worker's memory bound (agents/extractor/pdf-worker.ts). The worker stops itself with
 * this exit code when a PDF would take it past its bound; the reader (parse-pdf.ts) answers
 * unsupported_format.
 */
export const OVER_MEMORY_EXIT_CODE = 75;

/** Array buffers asked for since the last look at the thread's memory, past which it looks again. */
const CHECK_EVERY_BYTES = 2 ** 20;

const TYPED_ARRAYS = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
] as const;

/** The bytes a typed array constructor call allocates: none on an existing buffer. */
function typedArrayBytes(first: unknown, bytesPerElement: number): number {
  if (typeof first === 'number') return first * bytesPerElement;
  if (first instanceof ArrayBuffer || first instanceof SharedArrayBuffer) return 0;
  if (typeof first === 'object' && first !== null && 'length' in first) return (Number(first.length) || 0) * bytesPerElement;
  return 0;
}

/**
 * Meters this thread's array buffers; call before pdf.js runs, in its worker only. The memory a
 * PDF costs is mostly the typed arrays pdf.js decodes its streams into, and neither bound Node 20
 * offers holds them: V8 does not count array buffers toward a worker's resourceLimits (a 300 MiB
 * stream decodes to completion in a worker capped at 64 MiB of heap), and the decode is
 * synchronous, so a timer in the worker never runs while it goes on. So the global typed array and
 * ArrayBuffer constructors look, every {@link CHECK_EVERY_BYTES} asked for, at this thread's own
 * heap and external memory (process.memoryUsage() counts them per thread; only rss is the
 * process's), and stop the thread before an allocation would take it past the budget. Typed
 * arrays made without the global constructors (a slice, a Buffer) are not looked at when made, but
 * are counted at the next look. Memory the thread has dropped but not yet collected is counted.
 */
export function meterArrayBuffers(): { setBudget(bytes: number): void } {
  let budget = Number.POSITIVE_INFINITY;
  let sinceCheck = 0;
  const asked = (bytes: number): void => {
    sinceCheck += bytes;
    if (sinceCheck < CHECK_EVERY_BYTES) return;
    sinceCheck = 0;
    const { heapUsed, external } = process.memoryUsage();
    // process.exit ends this thread only, and pdf.js cannot catch it as it could an exception.
    if (heapUsed + external + bytes > budget) process.exit(OVER_MEMORY_EXIT_CODE);
  };
  const metered = <T extends abstract new (...args: never[]) => unknown>(constructor: T, bytes: (args: unknown[]) => number): T => {
    const proxy: T = new Proxy(constructor, {
      construct(target, args: unknown[], newTarget: new (...args: never[]) => unknown) {
        asked(bytes(args));
        // `new Uint8Array(n)` itself is constructed with the real constructor as new.target: with
        // the proxy there, V8 reads its prototype through the proxy on every array, which made
        // pdf.js read a text-heavy PDF two to three times slower (same prototype either way).
        return Reflect.construct(target, args, (newTarget as unknown) === proxy ? target : newTarget) as object;
      },
    });
    return proxy;
  };
  const global = globalThis as Record<string, unknown>;
  for (const constructor of TYPED_ARRAYS) {
    global[constructor.name] = metered(constructor, (args) => typedArrayBytes(args[0], constructor.BYTES_PER_ELEMENT));
  }
  global.ArrayBuffer = metered(ArrayBuffer, (args) => Number(args[0]) || 0);
  return {
    setBudget(bytes: number): void {
      budget = bytes;
      sinceCheck = 0;
    },
  };
}
