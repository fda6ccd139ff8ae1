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

  /** The line whose request_id is `id`, waited for a little (the destination may get it a turn after the answer went out). */
  async byRequestId(id: string | undefined): Promise<Record<string, unknown> | undefined> {
    for (let i = 0; i < 200; i++) {
      const line = this.lines.find((logged) => logged.request_id === id);
      if (line !== undefined || id === undefined) return line;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return undefined;
  }

  /** The raw text of every line, for "never logs a token" checks. */
  text(): string {
    return this.lines.map((line) => JSON.stringify(line)).join('\n');
  }
}

/** A request's line without the fields every line has its own of (time, request and trace ids), to compare two requests' lines. */
export function sharedFields(line: Record<string, unknown>): Record<string, unknown> {
  const { time: _time, request_id: _requestId, trace_id: _traceId, ...fields } = line;
  return fields;
}
