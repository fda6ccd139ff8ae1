import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { closeAfterUpgradeRequest } from './http/upgrade.js';

/** What /ready reports; readiness is false while starting, draining, or a gate is closed. */
export interface ReadinessSource {
  readiness(): { ready: boolean; details: Record<string, unknown> };
}

/**
 * The admin listener: /ready, /healthz, /metrics. Never the proxied port, so neither clients
 * nor agents can reach metrics through the service address.
 */
/** How a fetch of the upstream's metrics ended: appended whole, or why not. */
export type UpstreamMetricsResult = 'success' | 'http_error' | 'unreachable' | 'too_large' | 'too_many_samples';
/** Why single lines of the upstream's metrics were left out while the rest was appended. */
export type UpstreamLineDrop = 'own_family' | 'unparseable';

/** Where the admin listener counts what became of the upstream's metrics. */
export interface UpstreamMetricsRecorder {
  fetched(result: UpstreamMetricsResult): void;
  linesDropped(reason: UpstreamLineDrop, lines: number): void;
}

export function createAdminServer(
  registry: Registry,
  readiness: ReadinessSource,
  upstreamMetricsUrl: () => string | undefined = () => undefined,
  recorder?: UpstreamMetricsRecorder,
): Server {
  // One fetch of the upstream's metrics at a time, shared by the scrapes that come while it runs:
  // the agent, on the same loopback, scraping many times at once cannot make the sidecar hold
  // its 4 MiB answer once per scrape.
  let fetching: { readonly url: string; readonly text: Promise<string> } | undefined;
  const upstreamMetrics = (url: string): Promise<string> => {
    if (fetching?.url !== url) {
      const shared = { url, text: fetchUpstreamMetrics(url).then((fetched) => appendable(fetched, registry, recorder)) };
      fetching = shared;
      const done = (): void => {
        if (fetching === shared) fetching = undefined;
      };
      shared.text.then(done, done);
    }
    return fetching.text;
  };
  return createServer(async (req, res) => {
    closeAfterUpgradeRequest(req, res);
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/ready') {
      const { ready, details } = readiness.readiness();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', ...details });
    } else if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/metrics') {
      const own = await registry.metrics();
      const url = upstreamMetricsUrl();
      const upstream = url === undefined ? '' : await upstreamMetrics(url);
      res.writeHead(200, { 'content-type': registry.contentType }).end(own + upstream);
    } else {
      sendJson(res, 404, { error: 'not found' });
    }
  });
}

function sendJson(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}

/** An upstream's exposition larger than this is not appended: a scrape must not cost the sidecar its memory. */
export const UPSTREAM_METRICS_MAX_BYTES = 4 * 1024 * 1024;

/**
 * An upstream's exposition with more samples than this is not appended at all: 4 MiB of short
 * lines is some 200 000 series, which every scrape would add to Prometheus. None rather than the
 * first 10 000: a family cut short would read as true.
 */
export const UPSTREAM_METRICS_MAX_SAMPLES = 10_000;

/**
 * The upstream's own metrics (e.g. the MCP gateway's breaker and pool), appended to ours so one
 * scrape of the admin listener covers the task: the upstream listens on 127.0.0.1 only. A failed
 * or oversized fetch never fails the scrape; it leaves a comment and the sidecar's own metrics.
 */
async function fetchUpstreamMetrics(url: string): Promise<{ readonly result: UpstreamMetricsResult; readonly text: string }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      return { result: 'http_error', text: `# upstream metrics unavailable: HTTP ${response.status}\n` };
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    // Leaving the loop early cancels the body.
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > UPSTREAM_METRICS_MAX_BYTES) return { result: 'too_large', text: `# upstream metrics unavailable: larger than ${UPSTREAM_METRICS_MAX_BYTES} bytes\n` };
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    return { result: 'success', text: text.endsWith('\n') ? text : `${text}\n` };
  } catch {
    return { result: 'unreachable', text: '# upstream metrics unavailable\n' };
  }
}

/** What of a fetch is appended to the sidecar's metrics, counted. */
function appendable(fetched: { readonly result: UpstreamMetricsResult; readonly text: string }, registry: Registry, recorder: UpstreamMetricsRecorder | undefined): string {
  if (fetched.result !== 'success') {
    recorder?.fetched(fetched.result);
    return fetched.text;
  }
  const filtered = withoutOwnFamilies(fetched.text, registry);
  recorder?.fetched(filtered.result);
  if (filtered.ownFamilyLines > 0) recorder?.linesDropped('own_family', filtered.ownFamilyLines);
  if (filtered.unparseableLines > 0) recorder?.linesDropped('unparseable', filtered.unparseableLines);
  return filtered.text;
}

// The series names one family exposes (prom-client, text format 0.0.4).
const SAMPLE_SUFFIXES = ['', '_bucket', '_sum', '_count'];

// Text format 0.0.4 lines as Prometheus parses them, in the strict spelling exporters write:
// a sample (name, labels without blanks, a float, an optional timestamp), or a HELP or TYPE line.
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\]|\\\\.)*"';
const FLOAT = '[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]?Inf|NaN';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL}(?:,${LABEL})*,?)?)\\})?[ \\t]+(${FLOAT})(?:[ \\t]+(\\d+))?[ \\t]*$`);
const HELP = new RegExp(`^# HELP (${NAME}) `);
const TYPE = new RegExp(`^# TYPE (${NAME}) (?:counter|gauge|histogram|summary|untyped)$`);
/** What Prometheus reads as a HELP or TYPE line: `#`, blanks, the keyword, blanks. */
const META = /^#[ \t]+(?:HELP|TYPE)[ \t]/;
const INT64_MAX = 2n ** 63n - 1n;
const LABEL_NAME = /([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g;

/**
 * The name a line of the upstream's exposition gives a family, '' for a line that names none (a
 * blank line, a plain comment), undefined for one Prometheus could not parse.
 */
function lineName(line: string): string | undefined {
  if (line === '') return '';
  if (line.startsWith('#')) {
    if (!META.test(line)) return '';
    return (HELP.exec(line) ?? TYPE.exec(line))?.[1];
  }
  const sample = SAMPLE.exec(line);
  if (sample === null) return undefined;
  const [, name, labels, value = '', timestamp] = sample;
  if (labels !== undefined) {
    const names = [...labels.matchAll(LABEL_NAME)].map((match) => match[1] ?? '');
    // A `__name__` label would rename the sample (into a family of the sidecar's, say), or fail
    // the scrape as a second name: names with `__` are Prometheus's own, and no exporter writes them.
    if (new Set(names).size !== names.length || names.some((label) => label.startsWith('__'))) return undefined;
  }
  // Prometheus fails the whole scrape on a value out of a float64's range (Go's ParseFloat: 1e999
  // is an error, not +Inf) and on a timestamp past an int64.
  if (!Number.isFinite(Number(value)) && !/Inf|NaN/.test(value)) return undefined;
  if (timestamp !== undefined && BigInt(timestamp) > INT64_MAX) return undefined;
  return name;
}

/**
 * The upstream's exposition without any family the sidecar itself exposes: a family written twice
 * makes Prometheus refuse the whole scrape, so an agent exporting, say, ca_a2a_requests_total
 * would have hidden every sidecar metric, or forged samples of it. So would one line Prometheus
 * cannot parse, which fails the whole scrape: such lines are dropped too (so is a line spelled in
 * a way exporters do not write, e.g. with blanks before a sample, which Prometheus reads as a
 * sample all the same). What was dropped is said in a comment. Past UPSTREAM_METRICS_MAX_SAMPLES
 * samples kept, nothing of the upstream's is, and a comment says why.
 */
function withoutOwnFamilies(text: string, registry: Registry): { result: 'success' | 'too_many_samples'; text: string; ownFamilyLines: number; unparseableLines: number } {
  const own = new Set<string>();
  for (const metric of registry.getMetricsAsArray()) for (const suffix of SAMPLE_SUFFIXES) own.add(`${metric.name}${suffix}`);
  const dropped = new Set<string>();
  let ownFamilyLines = 0;
  let malformed = 0;
  let samples = 0;
  const kept: string[] = [];
  const lines = text.split('\n');
  // The last element is what follows the final newline: nothing.
  if (lines.at(-1) === '') lines.pop();
  for (const line of lines) {
    const name = lineName(line);
    if (name === undefined) {
      malformed++;
    } else if (own.has(name)) {
      dropped.add(name);
      ownFamilyLines++;
    } else {
      // Every line kept but a blank one or a comment (HELP and TYPE lines included) is a sample.
      if (line !== '' && !line.startsWith('#') && ++samples > UPSTREAM_METRICS_MAX_SAMPLES) {
        return { result: 'too_many_samples', text: `# upstream metrics unavailable: more than ${UPSTREAM_METRICS_MAX_SAMPLES} samples\n`, ownFamilyLines: 0, unparseableLines: 0 };
      }
      kept.push(line);
    }
  }
  let notes = '';
  if (dropped.size > 0) notes += `# upstream metrics dropped, names the sidecar exposes: ${[...dropped].join(' ')}\n`;
  if (malformed > 0) notes += `# upstream metrics dropped, ${malformed} lines Prometheus could not parse\n`;
  return { result: 'success', text: `${kept.map((line) => `${line}\n`).join('')}${notes}`, ownFamilyLines, unparseableLines: malformed };
}
