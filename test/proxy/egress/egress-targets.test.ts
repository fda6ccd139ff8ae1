import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isPolicyLoadError } from '../../../proxy/policy/errors.js';
import { loadPolicy } from '../../../proxy/policy/load.js';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { tempDirSync } from '../../helpers/temp-dir.js';

const POLICIES_DIR = new URL('../../../policies/', import.meta.url).pathname;

/** The problems loading the shipped orchestrator policy reports, its extractor target at `url`, or none. */
function problemsWith(url: string | undefined, serviceUrls: Record<string, string> = {}): string[] {
  let file = shippedPolicyFile('orchestrator');
  if (url !== undefined) {
    file = join(tempDirSync('egress-targets'), 'orchestrator.yaml');
    writeFileSync(file, readFileSync(shippedPolicyFile('orchestrator'), 'utf8')
      .replace(/(?<=: )\.\.\//g, POLICIES_DIR)
      .replace('url: http://127.0.0.1:8002', `url: "${url}"`));
  }
  try {
    loadPolicy(file, { serviceUrls });
    return [];
  } catch (error) {
    if (!isPolicyLoadError(error)) throw error;
    return error.problems.map((problem) => `${problem.path}: ${problem.message}`);
  }
}

// The proof's htu is the target's URL joined with the path, as written: a user in it went into
// every proof (the password too) and the request went without it, a query moved the path into the
// query, and a scheme other than http(s) failed only at the first call. Each call was then refused
// by the target (htu mismatch, 401), and sent again with a new token: two token requests a call.
describe('egress: target URLs', () => {
  it('refuses a target URL with a user, a query, a fragment or a scheme other than http(s), in the policy or from --service-url', () => {
    for (const url of ['http://user:secret@127.0.0.1:8002', 'http://@127.0.0.1:8002', 'http://127.0.0.1:8002/?x=1', 'http://127.0.0.1:8002/#f', 'ftp://127.0.0.1:8002']) {
      const problems = problemsWith(url);
      assert.equal(problems.length, 1, `${url}: ${problems.join('; ')}`);
      assert.match(problems[0] as string, /^\/egress\/targets\/extractor\/url: /);
      const overridden = problemsWith(undefined, { extractor: url });
      assert.equal(overridden.length, 1, `--service-url ${url}: ${overridden.join('; ')}`);
      assert.match(overridden[0] as string, /--service-url/);
    }
  });

  it('accepts an http(s) origin with an optional path', () => {
    for (const url of ['http://127.0.0.1:8002', 'https://extractor.example:8443/', 'http://gateway.example/extractor']) {
      assert.deepEqual(problemsWith(url), [], url);
      assert.deepEqual(problemsWith(undefined, { extractor: url }), [], url);
    }
  });
});
