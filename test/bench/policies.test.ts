import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { benchMcpPolicy } from '../../bench/mcp-policy.js';
import { tokenCosts } from '../../bench/token-cost.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { shippedPolicyFile } from '../../proxy/services.js';
import { RBAC_FILE } from '../helpers/harness.js';
import { loadProblems } from '../helpers/policy-problems.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const bench = (file: string): string => new URL(`../../bench/${file}`, import.meta.url).pathname;

// The benchmarks run in no test: a policy of theirs that stopped loading went unseen (bench:mcp
// appended a second rate_limit to the shipped mcp policy and did not start for two days).
describe('the policies the benchmarks run their sidecars on', () => {
  for (const file of ['policy.yaml', 'policy-dpop.yaml', 'policy-egress-target.yaml']) {
    it(`bench/${file} loads`, () => {
      assert.deepEqual(loadProblems(bench(file)), []);
    });
  }

  it("bench:mcp's is the shipped mcp policy with only its default rate limit raised", () => {
    const file = join(tempDirSync('bench-mcp'), 'mcp.yaml');
    writeFileSync(file, benchMcpPolicy(RBAC_FILE));
    const edited = loadPolicy(file);
    const shipped = loadPolicy(shippedPolicyFile('mcp'));
    assert.deepEqual(edited.rateLimit.defaultRule, { points: 100_000_000, windowSeconds: 60 });
    assert.deepEqual([...edited.methods.keys()], [...shipped.methods.keys()]);
    assert.deepEqual(edited.rateLimit.perRole, shipped.rateLimit.perRole);
  });
});

// The benchmark's issuer is its own: when the sidecar's checks on tokens grew (the token type),
// its tokens were refused and every benchmarked request was a 401.
describe("the benchmark issuer's tokens", () => {
  it('are admitted by the authentication layer on the benchmark policy', async () => {
    // tokenCosts throws on the first token refused.
    assert.match(await tokenCosts(5), /^Authentication per request, in process \(RS256, 5 tokens\): a token seen for the first time \d+ µs/);
  });
});
