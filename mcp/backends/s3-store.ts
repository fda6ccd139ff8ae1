import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { errorCode } from '../resilience.js';
import { ObjectTooLargeError, TRANSIENT_NETWORK_CODES } from './object-store.js';
import type { ObjectHead, ObjectStore } from './object-store.js';

/** Connection settings of an S3 or S3-compatible bucket. */
export interface S3StoreOptions {
  bucket: string;
  /** Endpoint override (MinIO, s3rver, LocalStack); addressing is then path-style. */
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed', 'TimeoutError']);

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = err.$metadata as { httpStatusCode?: number } | undefined;
  return meta?.httpStatusCode;
}

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

/** True for S3 errors worth retrying: network failures, 5xx, 429 and throttling names. */
export function isS3Transient(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined && TRANSIENT_NETWORK_CODES.has(code)) return true;
  const name = errorName(err);
  if (name !== undefined && THROTTLING.has(name)) return true;
  const status = httpStatus(err);
  return status !== undefined && (status >= 500 || status === 429);
}

/**
 * A missing key: NoSuchKey from GetObject, NotFound (a 404 without a body) from HeadObject. Not
 * any 404: GetObject in a bucket that does not exist is 404 NoSuchBucket, the gateway's failure.
 */
function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound';
}

/**
 * Sockets to the bucket without a cap. An object answer holds its connection at its reader's
 * pace (/call_tool streams it); with the SDK's default of 50 sockets, 50 answers nobody reads
 * held them all and every other bucket call waited for one until it timed out, as if S3 were
 * down. The calls in flight, and so the sockets, are bounded by the sidecar in front
 * (limits.upstream_max_connections).
 */
const AGENT_OPTIONS = { keepAlive: true, maxSockets: Infinity };

/**
 * Reads `stream` to its end, at most `maxBytes` of it; past that it is destroyed (nothing more is
 * read from the bucket) and the object refused as too large, its size a lower bound.
 */
async function readBounded(stream: Readable, maxBytes: number): Promise<{ body: Readable; size: number }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    // Leaving the loop by the throw destroys the stream.
    if (size > maxBytes) throw new ObjectTooLargeError(size, { atLeast: true });
    chunks.push(chunk as Buffer);
  }
  return { body: Readable.from(chunks.length === 0 ? [] : [Buffer.concat(chunks, size)]), size };
}

/** An ObjectStore over @aws-sdk/client-s3; the SDK's own retries are off so ours are the only ones. */
export function createS3Store(options: S3StoreOptions): ObjectStore {
  const client = new S3Client({
    region: options.region ?? 'us-east-1',
    ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
    ...(options.accessKeyId && options.secretAccessKey
      ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
      : {}),
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000, httpAgent: AGENT_OPTIONS, httpsAgent: AGENT_OPTIONS },
  });
  const Bucket = options.bucket;

  return {
    kind: 's3',
    isTransient: isS3Transient,
    async exists(key, signal) {
      try {
        await client.send(new HeadObjectCommand({ Bucket, Key: key }), { abortSignal: signal });
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    },
    async list(prefix, limit, continuation, signal) {
      // ListObjects (v1) with Marker = the last key of the previous page: the continuation then has
      // the same form on S3 and on the local-disk bucket, and works on S3-compatible servers whose
      // v2 continuation tokens do not (s3rver's need DES, which OpenSSL 3 no longer ships).
      const marker = continuation ? Buffer.from(continuation, 'base64url').toString('utf8') : undefined;
      const res = await client.send(new ListObjectsCommand({ Bucket, Prefix: prefix, MaxKeys: limit, Marker: marker }), {
        abortSignal: signal,
      });
      const objects = (res.Contents ?? []).map((o) => ({
        key: o.Key ?? '',
        size: o.Size ?? 0,
        last_modified: (o.LastModified ?? new Date(0)).toISOString(),
      }));
      const last = objects[objects.length - 1];
      return res.IsTruncated && last ? { objects, next_continuation: Buffer.from(last.key).toString('base64url') } : { objects };
    },
    async get(key, maxBytes, signal) {
      let res;
      try {
        res = await client.send(new GetObjectCommand({ Bucket, Key: key }), { abortSignal: signal });
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
      // In Node the SDK's body is the HTTP response stream; refused on its Content-Length before
      // a byte of an oversized object is read.
      const stream = res.Body;
      if (!(stream instanceof Readable)) throw new Error('S3 answered GetObject without a body stream');
      if (res.ContentLength !== undefined && res.ContentLength > maxBytes) {
        stream.destroy();
        throw new ObjectTooLargeError(res.ContentLength);
      }
      // An answer without a Content-Length (chunked, from some S3-compatible servers) says nothing
      // of its size up front: it is read here, up to the bound, so that the size the tool answers
      // with is the object's and an object over the bound is still refused before any of it is sent.
      const { body, size } = res.ContentLength === undefined ? await readBounded(stream, maxBytes) : { body: stream, size: res.ContentLength };
      const head: ObjectHead = {
        key,
        size,
        content_type: res.ContentType ?? 'application/octet-stream',
        last_modified: (res.LastModified ?? new Date(0)).toISOString(),
        etag: res.ETag ?? '',
      };
      return { head, body };
    },
    async put(key, body, contentType, signal) {
      const res = await client.send(
        new PutObjectCommand({ Bucket, Key: key, Body: body, ContentType: contentType, ContentLength: body.length }),
        { abortSignal: signal },
      );
      return { key, size: body.length, content_type: contentType, last_modified: new Date().toISOString(), etag: res.ETag ?? '' };
    },
    async delete(key, signal) {
      await client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: signal });
    },
    async close() {
      client.destroy();
    },
  };
}
