import { Writable } from 'node:stream';

/** A pino destination that keeps every line, parsed, for assertions on audit events. */
export class AuditCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    callback();
  }

  events(eventType: string): Record<string, unknown>[] {
    return this.lines.filter((line) => line.event_type === eventType);
  }

  /** The raw text of every line, for "never logs a token" checks. */
  text(): string {
    return this.lines.map((line) => JSON.stringify(line)).join('\n');
  }
}
