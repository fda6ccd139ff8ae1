import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ClientClosed } from './errors.js';

/**
 * A string field of a tool result whose text is still arriving: an object's bytes as base64,
 * read from the bucket as the response is written. `/call_tool` streams it into the JSON answer,
 * so the gateway never holds the object; the MCP transport, whose SDK frames whole messages,
 * reads it into a string first, within a budget per request (mcp-endpoint.ts).
 */
export class StreamedText {
  readonly stream: Readable;

  constructor(stream: Readable) {
    this.stream = stream;
  }
}

/**
 * The bytes of `source` as base64 text (RFC 4648 §4), chunk by chunk; no padding until the end.
 * The text fails, rather than ends, when the source ends with other than `expectedBytes` bytes:
 * the answer then carries no `size` its content contradicts.
 */
export function base64Of(source: Readable, expectedBytes: number): StreamedText {
  let rest: Buffer = Buffer.alloc(0);
  let seen = 0;
  const encoder = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > expectedBytes) return done(new Error(`object longer than its ${expectedBytes} bytes`));
      const data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
      // Whole 3-byte groups only: base64 of each group is independent of the next.
      const whole = data.length - (data.length % 3);
      rest = Buffer.from(data.subarray(whole));
      done(null, whole > 0 ? data.subarray(0, whole).toString('base64') : undefined);
    },
    flush(done) {
      if (seen !== expectedBytes) return done(new Error(`object ended after ${seen} of its ${expectedBytes} bytes`));
      done(null, rest.length > 0 ? rest.toString('base64') : undefined);
    },
  });
  source.on('error', (error) => encoder.destroy(error));
  // A text destroyed before its end (its client hung up, it ran past an MCP request's budget)
  // must let go of its source: pipe only unpipes, and the source stayed open, paused, for good,
  // holding a file handle or a bucket connection per client gone. After a whole read it is a no-op.
  encoder.on('close', () => source.destroy());
  // The text may fail before anyone reads it (over MCP a batch's later object waits its turn with
  // its bucket connection open); unheard, that 'error' would be an uncaught exception ending the
  // gateway. Its reader still gets the error: the stream stays errored, and for await and
  // pipeline reject with it.
  encoder.on('error', () => undefined);
  return new StreamedText(source.pipe(encoder));
}

function streamedField(result: Readonly<Record<string, unknown>>): [string, StreamedText] | undefined {
  for (const name in result) {
    const value = result[name];
    if (value instanceof StreamedText) return [name, value];
  }
  return undefined;
}

/**
 * Writes `body` as a whole JSON answer; rejects with {@link ClientClosed} when the client left
 * first: its connection closed before the answer was handed to it whole ('close' before
 * 'finish'), or before the answer was ready. An answer handed whole to the operating system and
 * lost after is not seen.
 */
export function endAnswer(res: ServerResponse, status: number, body: Readonly<Record<string, unknown>>, headers: Record<string, string> = {}): Promise<void> {
  const json = JSON.stringify(body);
  // Destroyed before anything was written: the client left while its call ran.
  if (res.destroyed) return Promise.reject(new ClientClosed('answer'));
  return new Promise((resolve, reject) => {
    res.once('finish', resolve);
    // After 'finish', a no-op.
    res.once('close', () => reject(new ClientClosed('answer')));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), ...headers });
    res.end(json);
  });
}

/**
 * Writes `body` as a JSON answer. A streamed field goes out as it arrives (chunked transfer, no
 * Content-Length); if its source fails midway the response is cut, never completed with wrong
 * data, and the promise rejects with the source's error so the caller can count and log it, or
 * with {@link ClientClosed} when the client closed its connection first.
 */
export async function sendJsonStreaming(res: ServerResponse, status: number, body: Readonly<Record<string, unknown>>): Promise<void> {
  const field = streamedField(body);
  if (!field) return endAnswer(res, status, body);
  const [name, streamed] = field;
  // Base64 never needs JSON escaping, so the text goes between the quotes a placeholder held.
  const placeholder = JSON.stringify(`stream-${randomUUID()}`);
  const [before, after] = JSON.stringify({ ...body, [name]: JSON.parse(placeholder) as string }).split(placeholder) as [string, string];
  res.writeHead(status, { 'content-type': 'application/json' });
  res.write(`${before}"`);
  // Whichever end failed first: the pipeline destroys the source when the client leaves, and the
  // response when the source fails, so both fail in either case. Listened to before the pipeline
  // listens, so each is heard before the pipeline destroys the other end.
  let clientFirst: boolean | undefined;
  res.once('close', () => (clientFirst ??= true));
  streamed.stream.once('error', () => (clientFirst ??= false));
  try {
    await pipeline(streamed.stream, res, { end: false });
  } catch (error) {
    res.destroy();
    throw clientFirst === true ? new ClientClosed('answer') : error;
  }
  res.end(`"${after}`);
}
