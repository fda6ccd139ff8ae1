import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { createSidecarMetrics } from '../../proxy/observe/metrics.js';
import { createAgentMetrics } from '../../agents/shared/metrics.js';

const root = (relative: string): string => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const RULES = root('deploy/prometheus/alerts.yaml');
const RULE_TESTS = root('deploy/prometheus/alerts.test.yaml');
const DASHBOARD = root('deploy/grafana/ca-a2a.json');
const MCP_DOCS = root('docs/mcp.md');
const RUNBOOKS = root('docs/runbooks.md');
const METRICS_DOCS = [root('docs/metrics.md'), MCP_DOCS, root('docs/agents.md')];

/** The gateway's names as the issue lists them, used until docs/mcp.md has its Metrics table. */
const MCP_FALLBACK = [
  'ca_a2a_mcp_tool_calls_total',
  'ca_a2a_mcp_tool_duration_seconds (histogram)',
  'ca_a2a_mcp_breaker_state',
  'ca_a2a_mcp_breaker_transitions_total',
  'ca_a2a_mcp_pool_clients',
];

interface Rule { readonly record?: string; readonly alert?: string; readonly expr: string; readonly annotations?: Record<string, string> }

/** Metric names in a PromQL expression; recording-rule names (with colons) are not metric names. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/(?<![\w:])ca_a2a_[A-Za-z0-9_]+(?![\w:])/g)].map((m) => m[0]);
}

function withHistogramSeries(name: string, histogram: boolean): string[] {
  return histogram ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

/** The table rows of a doc's first section whose heading names metrics (none when the file is missing). */
function metricsTableRows(file: string): string[] {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
  const start = lines.findIndex((line) => /^#+\s.*metrics/i.test(line));
  const rows: string[] = [];
  if (start < 0) return rows;
  for (const line of lines.slice(start + 1)) {
    if (/^#+\s/.test(line)) break;
    if (line.trimStart().startsWith('|')) rows.push(line);
  }
  return rows;
}

/** MCP names from docs/mcp.md's "Metrics" section (a table row per metric), else the fallback. */
function mcpMetricNames(): { names: Set<string>; source: string } {
  const section = metricsTableRows(MCP_DOCS);
  const rows = section.length > 0 ? section : MCP_FALLBACK;
  const names = new Set<string>();
  for (const row of rows) {
    for (const name of metricNames(row)) for (const n of withHistogramSeries(name, /histogram/i.test(row) || name.endsWith('_seconds'))) names.add(n);
  }
  return { names, source: section.length > 0 ? 'docs/mcp.md' : 'the issue\'s list' };
}

function dashboardExprs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) dashboardExprs(item, out);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'expr' || key === 'query' || key === 'definition') && typeof value === 'string') out.push(value);
      else dashboardExprs(value, out);
    }
  }
  return out;
}

describe('alert rules and dashboard', () => {
  let known: Set<string>;
  let mcpSource: string;
  let rules: Rule[];
  let dashboard: { panels: Array<{ id: number; type: string; datasource?: { uid: string } }> };

  before(async () => {
    const sidecar = createSidecarMetrics({ collectProcess: true });
    const metrics = await sidecar.registry.getMetricsAsJSON();
    known = new Set(metrics.flatMap((m) => withHistogramSeries(m.name, String(m.type) === 'histogram')));
    const mcp = mcpMetricNames();
    for (const name of mcp.names) known.add(name);
    mcpSource = mcp.source;
    const agent = await createAgentMetrics('extractor').registry.getMetricsAsJSON();
    for (const m of agent) for (const name of withHistogramSeries(m.name, String(m.type) === 'histogram')) known.add(name);
    const file = parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> };
    rules = file.groups.flatMap((g) => g.rules);
    dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as typeof dashboard;
  });

  it('use only metrics the sidecar or an agent registers, or the MCP gateway documents', () => {
    const used = new Map<string, string>();
    for (const rule of rules) for (const name of metricNames(rule.expr)) used.set(name, `rule ${rule.alert ?? rule.record ?? '?'}`);
    for (const expr of dashboardExprs(dashboard)) for (const name of metricNames(expr)) used.set(name, 'dashboard');
    const unknown = [...used].filter(([name]) => !known.has(name)).map(([name, where]) => `${name} (${where})`);
    assert.deepEqual(unknown, [], `unknown to createSidecarMetrics(), createAgentMetrics() and ${mcpSource}`);
    assert.ok(used.size >= 15, 'the dashboard covers the metric families');
  });

  it('chart or alert on every metric the metrics tables of docs/metrics.md, mcp.md and agents.md document', () => {
    const exprs = [...rules.map((r) => r.expr), ...dashboardExprs(dashboard)];
    const used = new Set(exprs.flatMap(metricNames).map((name) => name.replace(/_(bucket|sum|count)$/, '')));
    // The row's first cell names the metric; its meaning may name others.
    const documented = METRICS_DOCS.flatMap(metricsTableRows).flatMap((row) => metricNames(row.split('|')[1] ?? ''));
    assert.ok(documented.length >= 40, `found the metrics tables (${documented.length} names)`);
    assert.deepEqual(documented.filter((name) => !used.has(name)), [], 'documented, yet neither charted nor alerted on');
  });

  it('filter the dashboard by service only on metrics documented with a service label', () => {
    // The table's labels column: name → labels. Process metrics are not in it: they carry no service label.
    const labels = new Map(METRICS_DOCS.flatMap(metricsTableRows).map((row) => row.split('|').map((cell) => cell.trim()))
      .map((cells) => [metricNames(cells[1] ?? '')[0] ?? '', (cells[3] ?? '').split(/,\s*/)]));
    const filtered = dashboardExprs(dashboard).flatMap((expr) => [...expr.matchAll(/(ca_a2a_[A-Za-z0-9_]+)\{[^}]*service=~"\$service"/g)].map((m) => m[1] ?? ''));
    assert.ok(filtered.length >= 20, 'the panels filter by the service variable');
    const unlabelled = filtered.filter((name) => !(labels.get(name.replace(/_(bucket|sum|count)$/, '')) ?? []).includes('service'));
    assert.deepEqual([...new Set(unlabelled)], [], 'a service matcher on these matches nothing once a service is picked');
  });

  it('translate each of the seed\'s four alarms on the metric it is about', () => {
    const alerts = new Map(rules.filter((r) => r.alert !== undefined).map((r) => [r.alert, r.expr]));
    const records = new Map(rules.filter((r) => r.record !== undefined).map((r) => [r.record, r.expr]));
    const expand = (expr: string): string => [...records].reduce((text, [name, body]) => text.replaceAll(name ?? '', `(${body})`), expr);
    const expectations: Array<[string, RegExp]> = [
      ['CaA2aAuthSuccessRateLow', /ca_a2a_authn_success_total[\s\S]*ca_a2a_authn_failures_total[\s\S]*< 0\.9/],
      ['CaA2aCircuitBreakerOpen', /ca_a2a_mcp_breaker_state[\s\S]*== 2/],
      ['CaA2aAuthorizationViolations', /ca_a2a_denials_total\{reason=~"authz\[\.\]\.\+"\}\[5m\][\s\S]*> 20/],
      ['CaA2aTokenUsedFromManyAddresses', /ca_a2a_anomalous_token_usage_total/],
    ];
    for (const [alert, pattern] of expectations) {
      const expr = alerts.get(alert);
      assert.ok(expr !== undefined, `${alert} exists`);
      assert.match(expand(expr), pattern, alert);
    }
  });

  it('link each alert to a runbook section that exists', () => {
    const runbooks = readFileSync(RUNBOOKS, 'utf8');
    const anchors = new Set([...runbooks.matchAll(/^#+\s+(.+)$/gm)].map((m) => (m[1] ?? '').toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')));
    for (const rule of rules.filter((r) => r.alert !== undefined)) {
      const anchor = rule.annotations?.['runbook_url']?.split('#')[1];
      assert.ok(anchor !== undefined && anchors.has(anchor), `${rule.alert} → #${String(anchor)}`);
    }
  });

  it('give every dashboard panel a unique id and the templated Prometheus data source', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) assert.equal(panel.datasource?.uid, '${datasource}');
  });

  it('pass promtool check rules and the promtool unit tests', () => {
    // Not a skip: a run without promtool has not checked the rules (.ci/run installs it).
    assert.equal(spawnSync('promtool', ['--version']).status, 0, 'promtool not installed (apt-get install -y prometheus)');
    execFileSync('promtool', ['check', 'rules', RULES], { stdio: 'pipe' });
    execFileSync('promtool', ['test', 'rules', RULE_TESTS], { stdio: 'pipe' });
  });
});
