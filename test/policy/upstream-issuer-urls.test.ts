import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyOverrides } from '../../proxy/policy/load.js';
import { shippedPolicyFile } from '../../proxy/services.js';
import { editedShippedPolicy, loadProblems } from '../helpers/policy-problems.js';

const UPSTREAM = 'upstream: http://127.0.0.1:9002';
const ISSUER = 'issuer: http://127.0.0.1:8080/realms/ca-a2a';

/** The problems (path: message) of the shipped extractor policy with `replace` applied to its text, and these overrides. */
function problemsOf(replace: [string, string] | undefined, overrides: PolicyOverrides = {}): string[] {
  const file = replace === undefined ? shippedPolicyFile('extractor') : editedShippedPolicy('extractor', (text) => {
    assert.ok(text.includes(replace[0]), `the shipped extractor policy has '${replace[0]}'`);
    return text.replace(replace[0], replace[1]);
  });
  return loadProblems(file, overrides);
}

// The forwarder keeps the upstream's origin only: before, a path or query written there was dropped
// without a word and every request went to the origin's /message.
describe('policy: upstream and issuer URLs', () => {
  it('refuses an upstream with a path, query, fragment or user, in the file or from --upstream, never repeating a password', () => {
    for (const url of ['http://127.0.0.1:9002/agent', 'http://127.0.0.1:9002/?x=1', 'http://127.0.0.1:9002#f', 'http://ops:s3cret@127.0.0.1:9002', 'ftp://127.0.0.1:9002']) {
      const inFile = problemsOf([UPSTREAM, `upstream: "${url}"`]);
      assert.equal(inFile.length, 1, `${url}: ${inFile.join('; ')}`);
      assert.match(inFile[0] as string, /^\/upstream: /);
      const overridden = problemsOf(undefined, { upstream: url });
      assert.equal(overridden.length, 1, `--upstream ${url}: ${overridden.join('; ')}`);
      assert.match(overridden[0] as string, /^\/upstream: '--upstream /);
      for (const problem of [...inFile, ...overridden]) assert.doesNotMatch(problem, /s3cret/);
    }
  });

  it("never repeats a password holding '/', '#' or '@' that cut the URL short (the URL does not parse, or parses as another host)", () => {
    for (const url of ['http://ops:s3/cret@127.0.0.1:9002', 'http://ops:s3#cret@127.0.0.1:9002', 'http://ops:1234/s3cret@127.0.0.1:9002']) {
      const problems = [...problemsOf([UPSTREAM, `upstream: "${url}"`]), ...problemsOf(undefined, { upstream: url })];
      assert.equal(problems.length, 2, `${url}: ${problems.join('; ')}`);
      for (const problem of problems) assert.doesNotMatch(problem, /s3|cret|1234/, problem);
    }
  });

  it('refuses an issuer with a query, fragment or user, which no token\'s iss could match', () => {
    for (const url of ['http://127.0.0.1:8080/realms/ca-a2a?x=1', 'http://127.0.0.1:8080/realms/ca-a2a#f', 'http://u:s3cret@127.0.0.1:8080/realms/ca-a2a']) {
      const inFile = problemsOf([ISSUER, `issuer: "${url}"`]);
      assert.equal(inFile.length, 1, `${url}: ${inFile.join('; ')}`);
      assert.match(inFile[0] as string, /^\/auth\/issuer: /);
      const overridden = problemsOf(undefined, { issuer: url });
      assert.match(overridden[0] as string, /^\/auth\/issuer: '--issuer /);
      for (const problem of [...inFile, ...overridden]) assert.doesNotMatch(problem, /s3cret/);
    }
  });

  it('accepts an upstream origin (with or without its slash) and an issuer with a path', () => {
    for (const url of ['http://127.0.0.1:9002', 'http://127.0.0.1:9002/', 'https://agent.internal:8443']) {
      assert.deepEqual(problemsOf([UPSTREAM, `upstream: "${url}"`]), [], url);
      assert.deepEqual(problemsOf(undefined, { upstream: url }), [], url);
    }
    for (const url of ['https://idp.example/realms/ca-a2a', 'https://idp.example/realms/ca-a2a/', 'http://127.0.0.1:8080']) {
      assert.deepEqual(problemsOf(undefined, { issuer: url }), [], url);
    }
  });
});
