import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { createGatewayMetrics } from '../../mcp/metrics.js';

/** Metric names in the first column of the table under "## Metrics" in docs/mcp.md. */
async function documentedMetrics(): Promise<string[]> {
  const doc = await readFile(new URL('../../docs/mcp.md', import.meta.url), 'utf8');
  const section = doc.split(/^## Metrics$/m)[1]?.split(/^## /m)[0] ?? '';
  return [...section.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1] as string);
}

describe('docs/mcp.md metrics table', () => {
  it('lists every registered ca_a2a_mcp_* metric and no other', async () => {
    const metrics = createGatewayMetrics(() => ({ total: 0, idle: 0, waiting: 0 }));
    const registered = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('ca_a2a_mcp_'));
    const documented = await documentedMetrics();
    assert.ok(registered.length > 0);
    assert.deepEqual([...documented].sort(), [...registered].sort());
    assert.equal(new Set(documented).size, documented.length, 'no metric documented twice');
  });
});
