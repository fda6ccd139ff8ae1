import { resolve } from 'node:path';
import { DEFAULT_ISSUER_URL } from '../../deploy/dev-issuer/realm.js';
import { SHIPPED_SERVICES } from '../services.js';
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
  lines.push('', `Try: ${tryCommand(endpoints)}`);
  lines.push('Ctrl-C stops everything.', '');
  return lines.join('\n');
}

/** A shell word: as is when plain, else single-quoted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * A `ca-a2a call` that works against this stack from another terminal in the same directory:
 * `call` defaults to the documented ports and ./.ca-a2a, so anything else is spelt out.
 */
function tryCommand(endpoints: Endpoints): string {
  const words = ['npx', 'ca-a2a', 'call', '--client', 'viewer'];
  const archivist = endpoints.services['archivist'];
  if (archivist === undefined || archivist === `http://127.0.0.1:${SHIPPED_SERVICES.archivist.port}`) words.push('--service', 'archivist');
  else words.push('--url', `${archivist}/message`);
  if (endpoints.issuer !== DEFAULT_ISSUER_URL) words.push('--issuer', endpoints.issuer);
  if (resolve(endpoints.dataDir) !== resolve('.ca-a2a')) words.push('--data-dir', endpoints.dataDir);
  return `${words.map(shellWord).join(' ')} --method list_documents --params '{}'`;
}
