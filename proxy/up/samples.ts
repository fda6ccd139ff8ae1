import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { projectPath } from '../paths.js';

/** The sample documents `ca-a2a up` feeds through the pipeline. */
export const SAMPLES_DIR = projectPath('examples/documents/');

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.pdf': 'application/pdf', '.csv': 'text/csv', '.json': 'application/json', '.txt': 'text/plain', '.md': 'text/markdown',
};

/** One sample file. */
export interface Sample {
  readonly filename: string;
  readonly contentType: string;
  readonly bytes: Buffer;
  /** Identifies the sample across runs: `up` twice uploads it once. */
  readonly sha256: string;
}

/** Reads the samples of a directory, in name order (files of unknown type are skipped). */
export async function loadSamples(dir = SAMPLES_DIR): Promise<Sample[]> {
  const names = (await readdir(dir)).sort();
  const samples: Sample[] = [];
  for (const filename of names) {
    const contentType = CONTENT_TYPES[extname(filename).toLowerCase()];
    if (contentType === undefined) continue;
    const bytes = await readFile(join(dir, filename));
    samples.push({ filename, contentType, bytes, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  return samples;
}
