import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shippedPolicyFile } from '../../../proxy/services.js';
import { editedShippedPolicy, loadProblems } from '../../helpers/policy-problems.js';

/** The problems loading the shipped orchestrator policy reports, its extractor target at `url`, or none. */
function problemsWith(url: string | undefined, serviceUrls: Record<string, string> = {}): string[] {
  const file = url === undefined ? shippedPolicyFile('orchestrator') : editedShippedPolicy('orchestrator', (text) => text.replace('url: http://127.0.0.1:8002', `url: "${url}"`));
  return loadProblems(file, { serviceUrls });
}

// The proof's htu is the target's URL joined with the path, as written: a user in it went into
// every proof (the password too) and the request went without it, a query moved the path into the
// query, and a scheme other than http(s) failed only at the first call. Each call was then refused
// by the target (htu mismatch, 401), and sent again with a new token: two token requests a call.
describe('egress: target URLs', () => {
  it('refuses a target URL with a user, a query, a fragment or a scheme other than http(s), in the policy or from --service-url, never repeating a password', () => {
    for (const url of ['http://user:secret@127.0.0.1:8002', 'http://@127.0.0.1:8002', 'http://127.0.0.1:8002/?x=1', 'http://127.0.0.1:8002/#f', 'ftp://127.0.0.1:8002']) {
      const problems = problemsWith(url);
      assert.equal(problems.length, 1, `${url}: ${problems.join('; ')}`);
      assert.match(problems[0] as string, /^\/egress\/targets\/extractor\/url: /);
      const overridden = problemsWith(undefined, { extractor: url });
      assert.equal(overridden.length, 1, `--service-url ${url}: ${overridden.join('; ')}`);
      assert.match(overridden[0] as string, /--service-url/);
      for (const problem of [...problems, ...overridden]) assert.doesNotMatch(problem, /secret/, 'a password is not repeated');
    }
  });

  it('accepts an http(s) origin with an optional path', () => {
    for (const url of ['http://127.0.0.1:8002', 'https://extractor.example:8443/', 'http://gateway.example/extractor']) {
      assert.deepEqual(problemsWith(url), [], url);
      assert.deepEqual(problemsWith(undefined, { extractor: url }), [], url);
    }
  });
});
