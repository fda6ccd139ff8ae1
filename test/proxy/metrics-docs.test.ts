import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createSidecarMetrics } from '../../proxy/observe/metrics.js';
import { ANOMALY_ACTIONS } from '../../proxy/stores/sidecar-stores.js';

const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
const documented = new Map<string, { type: string; labels: string[] }>();
for (const match of doc.matchAll(/^\| `(ca_a2a_[a-z_]+)` \| (\w+) \| ([a-z_, ]*) \|/gm)) {
  documented.set(match[1] as string, { type: match[2] as string, labels: (match[3] as string).split(',').map((label) => label.trim()).filter(Boolean) });
}

describe('docs/metrics.md', () => {
  it('documents every sidecar metric with its type and labels, and nothing else', async () => {
    const metrics = createSidecarMetrics({ collectProcess: false });
    const registered = (await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name);
    assert.deepEqual([...documented.keys()].sort(), [...registered].sort());
    for (const metric of await metrics.registry.getMetricsAsJSON()) {
      const entry = documented.get(metric.name);
      // prom-client keeps label names on the metric object, not in its JSON form.
      const labels = (metrics.registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] }).labelNames;
      assert.deepEqual(entry?.labels, labels, metric.name);
      assert.equal(entry?.type, metric.type, metric.name);
    }
  });

  it('lists every action of the stolen-token alarm, and no other', () => {
    const row = doc.split('\n').find((line) => line.startsWith('| `ca_a2a_anomalous_token_usage_total` |')) ?? '';
    // The values are the code spans of the description after `action`.
    const description = row.split(' | ').at(-1) ?? '';
    const values = [...description.split('`action`')[1]?.matchAll(/`([a-z_]+)`/g) ?? []].map((match) => match[1]);
    assert.deepEqual(values.sort(), [...ANOMALY_ACTIONS].sort());
  });
});
