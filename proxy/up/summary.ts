import type { Refusal, SampleOutcome } from './run-samples.js';

/** The endpoints worth knowing once everything runs. */
export interface Endpoints {
  readonly issuer: string;
  readonly services: Readonly<Record<string, string>>;
  readonly dataDir: string;
}

/** The readable report `ca-a2a up` prints once the samples went through. */
export function formatSummary(outcomes: readonly SampleOutcome[], refusal: Refusal | undefined, endpoints: Endpoints): string {
  const width = Math.max(...outcomes.map((o) => o.filename.length), 8);
  const lines = ['', 'Sample documents:'];
  for (const o of outcomes) {
    const score = o.score === undefined ? '     -' : `score ${o.score.toFixed(2)}`;
    const again = o.reused ? ' (from an earlier run)' : '';
    lines.push(`  ${o.filename.padEnd(width)}  ${o.status.padEnd(9)} ${score}${again}`);
    if (o.error !== undefined) lines.push(`  ${''.padEnd(width)}  ↳ ${o.error.length > 160 ? `${o.error.slice(0, 157)}...` : o.error}`);
  }
  if (refusal !== undefined) {
    lines.push('', 'The policy at work:');
    lines.push(`  ${refusal.who} → ${refusal.what}: ${refusal.status} ${refusal.reason} — ${refusal.message}`);
  }
  lines.push('', 'Serving:');
  lines.push(`  issuer        ${endpoints.issuer}`);
  for (const [name, url] of Object.entries(endpoints.services)) lines.push(`  ${name.padEnd(12)}  ${url}`);
  lines.push(`  data dir      ${endpoints.dataDir} (client secrets, database, bucket, logs)`);
  lines.push('', 'Try: npx ca-a2a call --client viewer --service archivist --method list_documents --params \'{}\'');
  lines.push('Ctrl-C stops everything.', '');
  return lines.join('\n');
}
