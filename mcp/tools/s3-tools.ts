import { createHash } from 'node:crypto';
import { ObjectTooLargeError } from '../backends/object-store.js';
import { ToolError } from '../errors.js';
import { normaliseKey } from '../object-keys.js';
import { base64Of } from '../streamed-text.js';
import { errorCode } from '../resilience.js';
import type { RunOptions } from '../resilience.js';
import type { ToolDeps, ToolFamily } from './tool-types.js';
import { TOOL_HINTS } from './tool-hints.js';

const key = { type: 'string', minLength: 1, maxLength: 1024, description: 'Object key under an allowed prefix (uploads/, archive/).' };

interface ListArgs { prefix: string; limit: number; continuation?: string }
interface KeyArgs { key: string }
interface PutArgs { key: string; content_base64: string; content_type: string }

function tooLarge(size: number, max: number, atLeast = false): ToolError {
  return new ToolError('too_large', atLeast ? `object is over the limit of ${max} bytes` : `object is ${size} bytes; the limit is ${max}`);
}

/**
 * Runs a store call under the S3 policy, mapping the store's own refusals. Every store call is
 * safe to repeat (a put writes the same bytes again, a delete of a deleted key succeeds), so
 * every transient failure is retried.
 */
async function guarded<T>(deps: ToolDeps, fn: (signal: AbortSignal) => Promise<T>, options?: RunOptions): Promise<T> {
  try {
    return await deps.s3.run(fn, options);
  } catch (err) {
    if (errorCode(err) === 'OBJECT_TOO_LARGE') {
      const { size, atLeast } = err as ObjectTooLargeError;
      throw tooLarge(size, deps.maxObjectBytes, atLeast);
    }
    // The store has logged which file; the object stays refused until it is put again or deleted.
    if (errorCode(err) === 'OBJECT_UNREADABLE') throw new ToolError('backend_error', 'the bucket holds this object but cannot read it', { backend: 's3' });
    throw err;
  }
}

/** The S3 tools: list, get, put and delete objects under the allowed prefixes. */
export const S3_TOOLS: ToolFamily = {
  s3_list_objects: {
    definition: {
      name: 's3_list_objects',
      annotations: TOOL_HINTS.s3_list_objects,
      description: 'List objects whose key starts with prefix, in key order, one page at a time.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['prefix'],
        properties: {
          prefix: { ...key, description: 'Key prefix; must start with an allowed prefix.' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          continuation: { type: 'string', minLength: 1, maxLength: 2048, description: 'next_continuation of the previous page.' },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as ListArgs;
      const prefix = normaliseKey(a.prefix, deps.keys, 'prefix');
      return guarded(deps, (signal) => deps.store.list(prefix, a.limit, a.continuation, signal));
    },
  },
  s3_get_object: {
    definition: {
      name: 's3_get_object',
      annotations: TOOL_HINTS.s3_get_object,
      description: 'Read one object; the result holds content_base64, content_type and size.',
      inputSchema: { type: 'object', additionalProperties: false, required: ['key'], properties: { key } },
    },
    async handler(args, deps) {
      const k = normaliseKey((args as unknown as KeyArgs).key, deps.keys);
      const found = await guarded(deps, (signal) => deps.store.get(k, deps.maxObjectBytes, signal));
      if (!found) throw new ToolError('not_found', `no object ${k}`);
      return {
        key: k,
        content_base64: base64Of(found.body, found.head.size),
        content_type: found.head.content_type,
        size: found.head.size,
        etag: found.head.etag,
        last_modified: found.head.last_modified,
      };
    },
  },
  s3_put_object: {
    definition: {
      name: 's3_put_object',
      annotations: TOOL_HINTS.s3_put_object,
      description: 'Write one object (replacing any object with the same key); returns its size and SHA-256.',
      inputSchema: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'content_base64', 'content_type'],
        properties: {
          key,
          content_base64: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', description: 'The bytes, base64 (RFC 4648 §4).' },
          content_type: { type: 'string', minLength: 3, maxLength: 255, pattern: '^[\\w.+-]+/[\\w.+-]+( *;[ -~]*)?$' },
        },
      },
    },
    async handler(args, deps) {
      const a = args as unknown as PutArgs;
      const k = normaliseKey(a.key, deps.keys);
      if (a.content_base64.length % 4 !== 0) throw new ToolError('invalid_arguments', 'content_base64 is not padded base64');
      // Decoded size is known from the text length; refuse before allocating the buffer.
      const size = (a.content_base64.length / 4) * 3 - (a.content_base64.match(/=+$/)?.[0].length ?? 0);
      if (size > deps.maxObjectBytes) throw tooLarge(size, deps.maxObjectBytes);
      const body = Buffer.from(a.content_base64, 'base64');
      // The arguments are this call's own parse (tool-runner.ts): dropping the text, 4/3 of the
      // object on the V8 heap, leaves only the bytes held while the bucket takes them.
      delete args.content_base64;
      // Its own bound: an upload's time grows with its size and the link, a 10 MiB put on a slow
      // link takes far longer than any other bucket call should.
      const head = await guarded(deps, (signal) => deps.store.put(k, body, a.content_type, signal), { timeoutMs: deps.uploadTimeoutMs });
      return {
        key: k,
        size: body.length,
        content_type: a.content_type,
        etag: head.etag,
        sha256: createHash('sha256').update(body).digest('hex'),
      };
    },
  },
  s3_delete_object: {
    definition: {
      name: 's3_delete_object',
      annotations: TOOL_HINTS.s3_delete_object,
      description: 'Delete one object; not_found when it does not exist.',
      inputSchema: { type: 'object', additionalProperties: false, required: ['key'], properties: { key } },
    },
    async handler(args, deps) {
      const k = normaliseKey((args as unknown as KeyArgs).key, deps.keys);
      // An object the bucket cannot read still exists: deleting it is how it is cleared.
      const existing = await guarded(deps, (signal) =>
        deps.store.exists(k, signal).catch((err: unknown) => {
          if (errorCode(err) === 'OBJECT_UNREADABLE') return true;
          throw err;
        }),
      );
      if (!existing) throw new ToolError('not_found', `no object ${k}`);
      await guarded(deps, (signal) => deps.store.delete(k, signal));
      return { key: k, deleted: true };
    },
  },
};
