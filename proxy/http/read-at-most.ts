/** A body went past the bound its reader set; the rest of it was not read. */
export class TooLargeError extends Error {}

/** The response's body, or a TooLargeError once more than `limit` bytes came (the rest is not read). */
export async function readAtMost(response: Response, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body !== null) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      // Leaving the loop cancels the stream: the rest is never read.
      if (size > limit) throw new TooLargeError(`answer larger than ${limit} bytes`);
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks, size);
}
