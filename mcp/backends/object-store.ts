import type { Readable } from 'node:stream';

/** Summary of one object in a listing. */
export interface ObjectSummary {
  key: string;
  size: number;
  last_modified: string;
}

/** Metadata of one object. */
export interface ObjectHead {
  key: string;
  size: number;
  content_type: string;
  last_modified: string;
  etag: string;
}

/** One page of a listing; `next_continuation` is opaque and absent on the last page. */
export interface ObjectPage {
  objects: ObjectSummary[];
  next_continuation?: string;
}

/**
 * The bucket behind the S3 tools: S3 (or any S3-compatible server) or a directory on disk.
 * Keys reach a store already normalised and confined; a store only stores.
 */
export interface ObjectStore {
  readonly kind: 's3' | 'disk';
  list(prefix: string, limit: number, continuation: string | undefined, signal: AbortSignal): Promise<ObjectPage>;
  /**
   * Whether the key names an object. Only that: a HEAD answer need not state a size (a chunked
   * answer has none), and no caller needs one.
   */
  exists(key: string, signal: AbortSignal): Promise<boolean>;
  /**
   * Opens an object for reading: its metadata and a stream of its bytes, which the caller must
   * consume or destroy. undefined when the key does not exist; an object over `maxBytes` is
   * refused (ObjectTooLargeError) before any of its bytes are handed out: on its stated size, or,
   * when the bucket states none, once more than `maxBytes` of it were read.
   */
  get(key: string, maxBytes: number, signal: AbortSignal): Promise<{ head: ObjectHead; body: Readable } | undefined>;
  put(key: string, body: Buffer, contentType: string, signal: AbortSignal): Promise<ObjectHead>;
  delete(key: string, signal: AbortSignal): Promise<void>;
  /** Connection errors, timeouts, 5xx and throttling; never a 4xx or a missing key. */
  isTransient(err: unknown): boolean;
  close(): Promise<void>;
}

/**
 * Thrown by a store when an object is bigger than the caller allows. `atLeast`: the object's size
 * was not stated, and `size` is what was read of it before the bound was passed.
 */
export class ObjectTooLargeError extends Error {
  readonly code = 'OBJECT_TOO_LARGE';
  readonly size: number;
  readonly atLeast: boolean;

  constructor(size: number, options: { atLeast?: boolean } = {}) {
    super(`object is ${options.atLeast ? 'over ' : ''}${size} bytes`);
    this.name = 'ObjectTooLargeError';
    this.size = size;
    this.atLeast = options.atLeast ?? false;
  }
}

/**
 * Thrown by a store for an object it holds but cannot read: a file that is not laid out as the
 * store writes them, or that it may not open. `reason` is a short fixed word, for logs.
 */
export class UnreadableObjectError extends Error {
  readonly code = 'OBJECT_UNREADABLE';
  readonly reason: string;

  constructor(reason: string) {
    super(`object file unreadable: ${reason}`);
    this.name = 'UnreadableObjectError';
    this.reason = reason;
  }
}

/** Network-level error codes that mean "try again", shared by the S3 and SQL classifiers. */
export const TRANSIENT_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);
