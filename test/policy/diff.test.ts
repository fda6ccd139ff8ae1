import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { decide } from '../../proxy/policy/decide.js';
import type { ServicePolicy } from '../../proxy/policy/model.js';
import { diffServices, loadSide } from '../../proxy/policy/tooling/diff.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const SHIPPED = new URL('../../policies/', import.meta.url).pathname;

/** Two real versions of the shipped policy directory: as shipped, and with the edits applied. */
function versions(edit: (rbac: string) => string): { before: string; after: string } {
  const root = tempDirSync('diff');
  const before = join(root, 'before');
  const after = join(root, 'after');
  cpSync(SHIPPED, before, { recursive: true });
  cpSync(SHIPPED, after, { recursive: true });
  const rbac = readFileSync(join(after, 'rbac.yaml'), 'utf8');
  const edited = edit(rbac);
  assert.notEqual(edited, rbac, 'the edit must apply');
  writeFileSync(join(after, 'rbac.yaml'), edited);
  return { before, after };
}

// The viewer gains delete_document; lambda loses process_document; the validator's tool deny of
// s3_delete_object goes (not granted to the validator, but a caller holding validator and admin
// gains it: a gain).
const edit = (rbac: string): string => rbac
  .replace('allow: [list_documents, get_document, check_status]', 'allow: [list_documents, get_document, check_status, delete_document]')
  .replace('allow: [upload_document, process_document]', 'allow: [upload_document]')
  .replace('deny: [s3_put_object, s3_delete_object]', 'deny: [s3_put_object]');

describe('policy diff', () => {
  it('lists exactly the changed grants between two directories', () => {
    const { before, after } = versions(edit);
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new}`);
    assert.deepEqual(changes.sort(), [
      'gained archivist viewer method delete_document none→allow',
      'gained mcp validator tool s3_delete_object deny→none',
      'lost orchestrator lambda method process_document allow→none',
    ]);
  });

  it('reports a loosened argument restriction, though the cell stays allow-args', () => {
    const { before, after } = versions((rbac) => rbac.replace('key: { type: string, pattern: "^uploads/" }\n        documents_create:', 'key: { type: string }\n        documents_create:'));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new} ${'detail' in c ? c.detail ?? '' : ''}`);
    assert.deepEqual(changes, ['changed mcp orchestrator tool s3_put_object allow-args→allow-args arguments']);
  });

  it('says the same for two rbac files, decided against the services that use the new one', () => {
    const { before, after } = versions(edit);
    const afterServices = loadSide(join(after, 'rbac.yaml'));
    assert.equal(afterServices.length, 6);
    const changes = diffServices(loadSide(join(before, 'rbac.yaml'), afterServices), afterServices);
    assert.equal(changes.length, 3);
  });

  it('prints an aligned table with a summary, and --exit-code fails on changes', async () => {
    const { before, after } = versions(edit);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1);
    assert.match(io.stdout, /^\+ +archivist +viewer +method delete_document +- → allow$/m);
    assert.match(io.stdout, /^- +orchestrator +lambda +method process_document +allow → -$/m);
    assert.match(io.stdout, /^\+ +mcp +validator +tool s3_delete_object +DENY → -$/m);
    assert.match(io.stdout, /3 changes: 2 gained, 1 lost, 0 changed/);
    const same = bufferIo();
    assert.equal(await policyCommand(['diff', before, before, '--exit-code'], same), 0);
    assert.equal(same.stdout, 'no access changes\n');
  });

  it('reports a switch to dry-run as a gain for every role (what was refused is forwarded), and back as a loss', async () => {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    const service = join(after, 'services', 'archivist.yaml');
    writeFileSync(service, readFileSync(service, 'utf8').replace('mode: enforce', 'mode: dry-run'));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.old}→${c.new}`);
    assert.deepEqual(changes, ['gained archivist * mode enforce→dry-run']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, 'a switch to dry-run fails --exit-code');
    assert.match(io.stdout, /^\+ +archivist +every role +mode +enforce → dry-run$/m);
    assert.match(io.stdout, /1 change: 1 gained, 0 lost, 0 changed/);
    assert.deepEqual(diffServices(loadSide(after), loadSide(before)).map((c) => `${c.change} ${c.kind} ${c.old}→${c.new}`), ['lost mode dry-run→enforce']);
  });

  it('reports no difference between each shipped policy (the directory, rbac.yaml, every service file) and a copy of it', async () => {
    const copy = join(tempDirSync('diff-copy'), 'policies');
    cpSync(SHIPPED, copy, { recursive: true });
    const services = readdirSync(join(SHIPPED, 'services')).filter((file) => file.endsWith('.yaml')).map((file) => join('services', file));
    assert.ok(services.length >= 6);
    for (const file of ['.', 'rbac.yaml', ...services]) {
      const io = bufferIo();
      assert.equal(await policyCommand(['diff', join(SHIPPED, file), join(copy, file), '--exit-code'], io), 0, `${file}: ${io.stdout}${io.stderr}`);
      assert.equal(io.stdout, 'no access changes\n', file);
    }
  });

  it('refuses OLD and NEW of different kinds (exit 2), rather than pairing one service with all of them', async () => {
    const pairs = [['services/validator.yaml', 'rbac.yaml', 'a service policy and NEW an rbac file'], ['.', 'services/mcp.yaml', 'a directory and NEW a service policy'], ['rbac.yaml', '.', 'an rbac file and NEW a directory']];
    for (const [old, now, kinds] of pairs as [string, string, string][]) {
      const io = bufferIo();
      assert.equal(await policyCommand(['diff', join(SHIPPED, old), join(SHIPPED, now)], io), 2, `${old} ${now}: ${io.stdout}`);
      assert.equal(io.stdout, '');
      assert.equal(io.stderr, `ca-a2a policy diff: OLD is ${kinds}: give two directories, two service policies or two rbac files\n`);
    }
  });

  it('reads a side at a git revision (REV:path)', async () => {
    const io = bufferIo();
    const status = await policyCommand(['diff', 'HEAD:policies', 'HEAD:policies', '--format', 'json'], io);
    assert.equal(status, 0, io.stderr);
    assert.deepEqual(JSON.parse(io.stdout), []);
  });
});

/** Two versions of the shipped directory whose service file NAME differs by the edit. */
function serviceVersions(name: string, edit: (text: string) => string): { before: string; after: string } {
  const { before, after } = versions((rbac) => `${rbac}\n`);
  const file = join(after, 'services', `${name}.yaml`);
  const text = readFileSync(file, 'utf8');
  assert.notEqual(edit(text), text, 'the edit must apply');
  writeFileSync(file, edit(text));
  return { before, after };
}
const lines = (before: string, after: string): string[] => diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new}`);

describe('policy diff: what guards a call besides the roles', () => {
  it('reports a params schema removed (any params now reach the agent) as a gain, added as a loss', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace(/ {4}params:\n {6}type: object\n {6}required: \[name\]\n(?: {6,}.*\n)+/, ''));
    assert.deepEqual(lines(before, after), ['gained mcp * params tools/call schema→none']);
    assert.deepEqual(lines(after, before), ['lost mcp * params tools/call none→schema']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +mcp +every role +params tools\/call +schema → none$/m);
  });

  it('reports a params schema changed inside, in the service file or in the $ref\'d schema file', () => {
    const inline = serviceVersions('mcp', (text) => text.replace('name: { type: string, minLength: 1 }', 'name: { type: string }'));
    assert.deepEqual(lines(inline.before, inline.after), ['changed mcp * params tools/call schema→schema']);
    const { before, after } = versions((rbac) => `${rbac}\n`);
    const schema = join(after, 'schemas', 'document-ref.json');
    const loosened = readFileSync(schema, 'utf8').replace('"additionalProperties": false', '"additionalProperties": true');
    assert.notEqual(loosened, readFileSync(schema, 'utf8'));
    writeFileSync(schema, loosened);
    assert.ok(lines(before, after).includes('changed archivist * params get_document schema→schema'), lines(before, after).join('\n'));
    // Unchanged $ref'd schemas read from two directories are not a change.
    const same = versions((rbac) => `${rbac}\n`);
    assert.deepEqual(lines(same.before, same.after), []);
  });

  it('reports a tool arguments schema removed, and a method integrity relaxed or tightened', () => {
    const tool = serviceVersions('mcp', (text) => text.replace('s3_get_object: {}', 's3_get_object: { arguments: { type: object, required: [key], properties: { key: { type: string } } } }'));
    assert.deepEqual(lines(tool.after, tool.before), ['gained mcp * arguments s3_get_object schema→none']);
    const relaxed = serviceVersions('mcp', (text) => text.replace('initialize: { access: tool_holders,', 'initialize: { access: tool_holders, integrity: off,'));
    assert.deepEqual(lines(relaxed.before, relaxed.after), ['gained mcp * integrity initialize required→off']);
    assert.deepEqual(lines(relaxed.after, relaxed.before), ['lost mcp * integrity initialize off→required']);
    // The service's mode, inherited by every method without its own.
    const service = serviceVersions('archivist', (text) => text.replace('dpop: required', 'dpop: optional'));
    assert.ok(lines(service.before, service.after).includes('gained archivist * integrity get_document required→optional'));
  });
});

describe('policy diff: public routes', () => {
  it('reports a route made public as a gain for callers without a token, made private again as a loss', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace('  - GET /card\n', '  - GET /card\n  - GET /status\n'));
    assert.deepEqual(lines(before, after), ['gained archivist anonymous public_route GET /status token→public']);
    assert.deepEqual(lines(after, before), ['lost archivist anonymous public_route GET /status public→token']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +archivist +anonymous +public_route GET \/status +token → public$/m);
    assert.match(io.stdout, /1 change: 1 gained, 0 lost, 0 changed/);
    const back = bufferIo();
    assert.equal(await policyCommand(['diff', after, before, '--exit-code'], back), 1, back.stdout);
    assert.match(back.stdout, /^- +archivist +anonymous +public_route GET \/status +public → token$/m);
  });

  it('reports nothing for the same routes in another order, or a HEAD route beside its public GET (HEAD passes as GET)', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace('  - GET /health\n  - GET /.well-known/agent-card.json\n  - GET /card\n', '  - GET /card\n  - HEAD /health\n  - GET /health\n  - GET /.well-known/agent-card.json\n'));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: auth', () => {
  const AUTH = '  algorithms: [RS256]\n  clock_tolerance_seconds: 30\n';

  it('reports an algorithm added, a larger leeway or key cache age as gains (more tokens accepted), the reverse as losses', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace(AUTH, '  algorithms: [RS256, PS256]\n  clock_tolerance_seconds: 120\n  jwks_cache_max_age_seconds: 86400\n'));
    assert.deepEqual(lines(before, after), [
      'gained mcp * auth algorithms PS256 refused→accepted',
      'gained mcp * auth clock_tolerance_seconds 30→120',
      'gained mcp * auth jwks_cache_max_age_seconds 3600→86400',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost mcp * auth algorithms PS256 accepted→refused',
      'lost mcp * auth clock_tolerance_seconds 120→30',
      'lost mcp * auth jwks_cache_max_age_seconds 86400→3600',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +mcp +every role +auth algorithms PS256 +refused → accepted$/m);
    assert.match(io.stdout, /^\+ +mcp +every role +auth clock_tolerance_seconds +30 → 120$/m);
    assert.match(io.stdout, /3 changes: 3 gained, 0 lost, 0 changed/);
    // One algorithm swapped for another: one line each way, not one 'changed' line hiding the gain.
    const swapped = serviceVersions('mcp', (text) => text.replace('algorithms: [RS256]', 'algorithms: [ES256]'));
    assert.deepEqual(lines(swapped.before, swapped.after), ['gained mcp * auth algorithms ES256 refused→accepted', 'lost mcp * auth algorithms RS256 accepted→refused']);
  });

  it('reports which tokens are accepted (issuer, audience, keys, roles claim) and key fetching and caching as changed', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text
      .replace('  issuer: http://127.0.0.1:8080/realms/ca-a2a\n  audience: ca-a2a-agents\n', '  issuer: http://idp.example/realms/other\n  audience: other-agents\n  jwks_uri: http://idp.example/keys\n  jwks_cooldown_seconds: 60\n  jwks_timeout_ms: 1000\n  token_cache_size: 0\n')
      .replace('roles_claim: realm_access.roles', 'roles_claim: groups'));
    assert.deepEqual(lines(before, after), [
      'changed mcp * auth issuer http://127.0.0.1:8080/realms/ca-a2a→http://idp.example/realms/other',
      'changed mcp * auth audience ca-a2a-agents→other-agents',
      'changed mcp * auth jwks_uri (discovery)→http://idp.example/keys',
      'changed mcp * auth roles_claim realm_access.roles→groups',
      'changed mcp * auth jwks_cooldown_seconds 30→60',
      'changed mcp * auth jwks_timeout_ms 5000→1000',
      'changed mcp * auth token_cache_size 10000→0',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^~ +mcp +every role +auth issuer +http:\/\/127\.0\.0\.1:8080\/realms\/ca-a2a → http:\/\/idp\.example\/realms\/other \(changed\)$/m);
    assert.match(io.stdout, /7 changes: 0 gained, 0 lost, 7 changed/);
  });

  it('reports nothing for an auth section that says the same (defaults written out or left out)', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace(AUTH, '  jwks_cooldown_seconds: 30\n  token_cache_size: 10000\n'));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: integrity besides the dpop mode', () => {
  const DPOP = '  dpop: required           # every call carries a DPoP proof bound to token and body (docs/integrity.md)\n';

  it('reports a proof algorithm added, a longer proof age or leeway, unbound tokens and replays let through while the store is down as gains, the reverse as losses', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace(DPOP, `${DPOP}  algorithms: [ES256, ES384, EdDSA, PS256, RS256, ES512]\n  proof_max_age_seconds: 300\n  leeway_seconds: 30\n  replay_store_failure: allow\n`));
    const strict = serviceVersions('mcp', (text) => text.replace(DPOP, `${DPOP}  require_bound_tokens: true\n  proof_max_age_seconds: 60\n`));
    assert.deepEqual(lines(before, after), [
      'gained mcp * dpop algorithms ES512 refused→accepted',
      'gained mcp * dpop leeway_seconds 5→30',
      'gained mcp * dpop replay_store_failure deny→allow',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost mcp * dpop algorithms ES512 accepted→refused',
      'lost mcp * dpop leeway_seconds 30→5',
      'lost mcp * dpop replay_store_failure allow→deny',
    ]);
    assert.deepEqual(lines(strict.before, strict.after), ['lost mcp * dpop proof_max_age_seconds 300→60', 'lost mcp * dpop require_bound_tokens false→true']);
    assert.deepEqual(lines(strict.after, strict.before), ['gained mcp * dpop proof_max_age_seconds 60→300', 'gained mcp * dpop require_bound_tokens true→false']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +mcp +every role +dpop replay_store_failure +deny → allow$/m);
    assert.match(io.stdout, /3 changes: 3 gained, 0 lost, 0 changed/);
  });

  it('reports nothing for an integrity section that says the same (defaults written out, algorithms in another order)', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace(DPOP, `${DPOP}  algorithms: [RS256, PS256, EdDSA, ES384, ES256]\n  require_bound_tokens: false\n  leeway_seconds: 5\n  replay_store_failure: deny\n`));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: rate limits', () => {
  const PER_ROLE = 'rate_limit:\n  per_role:\n    orchestrator: { points: 6000, window_seconds: 60 }\n';

  it('reports the limit turned off, a larger default, role or method budget as gains (more requests let through), the reverse as losses', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text
      .replace(PER_ROLE, 'rate_limit:\n  enabled: false\n  points: 600\n  per_role:\n    viewer: { points: 1200 }\n    orchestrator: { points: 12000, window_seconds: 60 }\n')
      .replace('tools/list: { access: tool_holders,', 'tools/list: { access: tool_holders, rate_limit: { points: 20000 },'));
    assert.deepEqual(lines(before, after), [
      'gained mcp * rate_limit enabled true→false',
      'gained mcp * rate_limit default 300/60s→600/60s',
      'gained mcp orchestrator rate_limit per_role 6000/60s→12000/60s',
      'gained mcp viewer rate_limit per_role 300/60s (default)→1200/60s',
      'gained mcp * rate_limit method tools/list (caller\'s budget)→20000/60s',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost mcp * rate_limit enabled false→true',
      'lost mcp * rate_limit default 600/60s→300/60s',
      'lost mcp orchestrator rate_limit per_role 12000/60s→6000/60s',
      'lost mcp viewer rate_limit per_role 1200/60s→300/60s (default)',
      'lost mcp * rate_limit method tools/list 20000/60s→(caller\'s budget)',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +mcp +viewer +rate_limit per_role +300\/60s \(default\) → 1200\/60s$/m);
    assert.match(io.stdout, /^\+ +mcp +every role +rate_limit default +300\/60s → 600\/60s$/m);
    assert.match(io.stdout, /5 changes: 5 gained, 0 lost, 0 changed/);
  });

  it('reports an override removed as a gain when what the calls fall back to is larger, a loss when smaller', () => {
    const { before, after } = serviceVersions('mcp', (text) => text
      .replace(PER_ROLE, `${PER_ROLE}    viewer: { points: 100 }\n    lambda: { points: 9000 }\n`)
      .replace('ping: { access: tool_holders }', 'ping: { access: tool_holders, rate_limit: { points: 10 } }'));
    // after → before: each override removed; viewer and ping fall back to more, lambda to less.
    assert.deepEqual(lines(after, before), [
      'lost mcp lambda rate_limit per_role 9000/60s→300/60s (default)',
      'gained mcp viewer rate_limit per_role 100/60s→300/60s (default)',
      'gained mcp * rate_limit method ping 10/60s→(caller\'s budget)',
    ]);
  });

  it('reports as changed a budget with more of points or rate and less of the other, a method budget between the callers\', or an override equal to the default', () => {
    const { before, after } = serviceVersions('mcp', (text) => text
      .replace(PER_ROLE, `rate_limit:\n  points: 600\n  window_seconds: 600\n  per_role:\n    viewer: { points: 300, window_seconds: 60 }\n    orchestrator: { points: 6000, window_seconds: 60 }\n`)
      .replace('tools/list: { access: tool_holders,', 'tools/list: { access: tool_holders, rate_limit: { points: 1000, window_seconds: 60 },'));
    assert.deepEqual(lines(before, after), [
      'changed mcp * rate_limit default 300/60s→600/600s',
      // Its own budget now, no longer the default's (counted apart, and chosen over it for a caller holding viewer and a role without one).
      'changed mcp viewer rate_limit per_role 300/60s (default)→300/60s',
      // More than the default's 300, less than the pipeline roles' 6000.
      'changed mcp * rate_limit method tools/list (caller\'s budget)→1000/60s',
    ]);
  });

  it('reports nothing for rate limits that say the same (defaults written out, roles in another order, a method budget\'s window left to the default)', async () => {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    for (const [dir, budget] of [[before, '{ points: 100 }'], [after, '{ points: 100, window_seconds: 60 }']] as const) {
      const file = join(dir, 'services', 'mcp.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace('ping: { access: tool_holders }', `ping: { access: tool_holders, rate_limit: ${budget} }`));
    }
    const file = join(after, 'services', 'mcp.yaml');
    const text = readFileSync(file, 'utf8');
    const reordered = text.replace(PER_ROLE, 'rate_limit:\n  enabled: true\n  points: 300\n  window_seconds: 60\n  per_role:\n    archivist: { points: 6000, window_seconds: 60 }\n    orchestrator: { points: 6000 }\n').replace('    archivist: { points: 6000, window_seconds: 60 }\nmethods:', 'methods:');
    assert.notEqual(reordered, text);
    writeFileSync(file, reordered);
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: limits', () => {
  const PUBLIC = 'public_routes:\n';

  it('reports a larger body, depth, batch or connection limit as a gain (more reaches the agent, more is held open), a smaller as a loss', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace(PUBLIC, `limits:\n  max_body_bytes: 104857600\n  max_depth: 1000\n  max_batch: 100\n  max_client_connections: 100000\n${PUBLIC}`));
    assert.deepEqual(lines(before, after), [
      'gained archivist * limits max_body_bytes 1048576→104857600',
      // Unset, the budget of bodies held at once follows a max_body_bytes above 64 MiB.
      'gained archivist * limits max_buffered_body_bytes 67108864→104857600',
      'gained archivist * limits max_depth 64→1000',
      'gained archivist * limits max_batch 20→100',
      'gained archivist * limits max_client_connections 10000→100000',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost archivist * limits max_body_bytes 104857600→1048576',
      'lost archivist * limits max_buffered_body_bytes 104857600→67108864',
      'lost archivist * limits max_depth 1000→64',
      'lost archivist * limits max_batch 100→20',
      'lost archivist * limits max_client_connections 100000→10000',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +archivist +every role +limits max_body_bytes +1048576 → 104857600$/m);
    assert.match(io.stdout, /5 changes: 5 gained, 0 lost, 0 changed/);
  });

  it('reports the timeouts and the upstream connections as changed, either way', async () => {
    const edit = `limits:\n  headers_timeout_ms: 10000\n  request_timeout_ms: 120000\n  keep_alive_timeout_ms: 5000\n  upstream_connect_timeout_ms: 500\n  upstream_timeout_ms: 60000\n  idle_timeout_ms: 600000\n  upstream_max_connections: 16\n${PUBLIC}`;
    const { before, after } = serviceVersions('archivist', (text) => text.replace(PUBLIC, edit));
    const expected = [
      'changed archivist * limits headers_timeout_ms 30000→10000',
      'changed archivist * limits request_timeout_ms 60000→120000',
      'changed archivist * limits keep_alive_timeout_ms 65000→5000',
      'changed archivist * limits upstream_connect_timeout_ms 2000→500',
      'changed archivist * limits upstream_timeout_ms 30000→60000',
      'changed archivist * limits idle_timeout_ms 300000→600000',
      'changed archivist * limits upstream_max_connections 256→16',
    ];
    assert.deepEqual(lines(before, after), expected);
    assert.deepEqual(lines(after, before).map((line) => line.split(' ')[0]), expected.map(() => 'changed'));
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^~ +archivist +every role +limits upstream_timeout_ms +30000 → 60000 \(changed\)$/m);
  });

  it('reports nothing for limits that say the same (defaults written out)', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace(PUBLIC, `limits:\n  max_body_bytes: 1048576\n  max_depth: 64\n  request_timeout_ms: 60000\n  upstream_max_connections: 256\n${PUBLIC}`));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: the stolen-token alarm', () => {
  const PUBLIC = 'public_routes:\n';

  it('reports the alarm or auto-revoke turned off, a trusted proxy added, more sources or a shorter window as gains, the reverse as losses', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace(PUBLIC, `anomaly:\n  auto_revoke: true\n  trusted_proxies: [10.0.0.0/8]\n  window_seconds: 7200\n${PUBLIC}`));
    const loose = serviceVersions('archivist', (text) => text.replace(PUBLIC, `anomaly:\n  enabled: false\n  max_sources: 10\n${PUBLIC}`));
    assert.deepEqual(lines(before, after), [
      'gained archivist * anomaly trusted_proxies 10.0.0.0/8 untrusted→trusted',
      'lost archivist * anomaly window_seconds 3600→7200',
      'lost archivist * anomaly auto_revoke false→true',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost archivist * anomaly trusted_proxies 10.0.0.0/8 trusted→untrusted',
      'gained archivist * anomaly window_seconds 7200→3600',
      'gained archivist * anomaly auto_revoke true→false',
    ]);
    assert.deepEqual(lines(loose.before, loose.after), ['gained archivist * anomaly enabled true→false', 'gained archivist * anomaly max_sources 3→10']);
    assert.deepEqual(lines(loose.after, loose.before), ['lost archivist * anomaly enabled false→true', 'lost archivist * anomaly max_sources 10→3']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', loose.before, loose.after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +archivist +every role +anomaly enabled +true → false$/m);
    assert.match(io.stdout, /2 changes: 2 gained, 0 lost, 0 changed/);
  });

  it('reports nothing for an alarm that says the same (defaults written out, proxies in another order)', async () => {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    for (const [dir, section] of [[before, 'anomaly:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.1]\n'], [after, 'anomaly:\n  enabled: true\n  trusted_proxies: [192.168.1.1, 10.0.0.0/8]\n  max_sources: 3\n  window_seconds: 3600\n  auto_revoke: false\n']] as const) {
      const file = join(dir, 'services', 'archivist.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(PUBLIC, `${section}${PUBLIC}`));
    }
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: audit', () => {
  it('reports the audit of granted calls turned off as a gain (what a caller was let do goes unrecorded), on again as a loss; the default written out as nothing', async () => {
    const { before, after } = serviceVersions('archivist', (text) => text.replace('public_routes:\n', 'audit:\n  granted: false\npublic_routes:\n'));
    assert.deepEqual(lines(before, after), ['gained archivist * audit granted true→false']);
    assert.deepEqual(lines(after, before), ['lost archivist * audit granted false→true']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +archivist +every role +audit granted +true → false$/m);
    const same = serviceVersions('archivist', (text) => text.replace('public_routes:\n', 'audit:\n  granted: true\npublic_routes:\n'));
    assert.deepEqual(lines(same.before, same.after), []);
  });
});

describe('policy diff: upstream', () => {
  it('reports another upstream, or its metrics served or no longer, as changed', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text
      .replace('upstream: http://127.0.0.1:9000\n', 'upstream: http://10.0.0.5:9000\n')
      .replace('upstream_metrics_path: /metrics\n', ''));
    assert.deepEqual(lines(before, after), ['changed mcp * upstream upstream http://127.0.0.1:9000→http://10.0.0.5:9000', 'changed mcp * upstream_metrics_path upstream_metrics_path /metrics→-']);
    assert.deepEqual(lines(after, before), ['changed mcp * upstream upstream http://10.0.0.5:9000→http://127.0.0.1:9000', 'changed mcp * upstream_metrics_path upstream_metrics_path -→/metrics']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^~ +mcp +every role +upstream +http:\/\/127\.0\.0\.1:9000 → http:\/\/10\.0\.0\.5:9000 \(changed\)$/m);
    assert.match(io.stdout, /^~ +mcp +every role +upstream_metrics_path +\/metrics → - \(changed\)$/m);
    assert.match(io.stdout, /2 changes: 0 gained, 0 lost, 2 changed/);
  });

  it('reports nothing for the same upstream, however written', async () => {
    const { before, after } = serviceVersions('mcp', (text) => text.replace('upstream: http://127.0.0.1:9000\n', 'upstream: "http://127.0.0.1:9000"\n'));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: egress', () => {
  const EXTRACTOR = '    extractor:\n      url: http://127.0.0.1:8002\n      methods: [extract_document]\n';

  it('reports a target, path, method or tool the agent may now call out to as a gain, one no longer as a loss', async () => {
    const { before, after } = serviceVersions('orchestrator', (text) => text
      .replace(EXTRACTOR, '    extractor:\n      url: http://127.0.0.1:8002\n      paths: [/message, /call_tool]\n      methods: [extract_document, get_status]\n      tools: [s3_get_object]\n    admin:\n      url: http://127.0.0.1:8005\n      methods: [revoke_before]\n'));
    assert.deepEqual(lines(before, after), [
      'gained orchestrator agent egress admin -→http://127.0.0.1:8005',
      'gained orchestrator agent egress admin path /message refused→allowed',
      'gained orchestrator agent egress admin method revoke_before refused→allowed',
      'gained orchestrator agent egress extractor path /call_tool refused→allowed',
      'gained orchestrator agent egress extractor method get_status refused→allowed',
      'gained orchestrator agent egress extractor tool s3_get_object refused→allowed',
    ]);
    assert.deepEqual(lines(after, before), [
      'lost orchestrator agent egress admin http://127.0.0.1:8005→-',
      'lost orchestrator agent egress admin path /message allowed→refused',
      'lost orchestrator agent egress admin method revoke_before allowed→refused',
      'lost orchestrator agent egress extractor path /call_tool allowed→refused',
      'lost orchestrator agent egress extractor method get_status allowed→refused',
      'lost orchestrator agent egress extractor tool s3_get_object allowed→refused',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +orchestrator +agent +egress admin method revoke_before +refused → allowed$/m);
    assert.match(io.stdout, /6 changes: 6 gained, 0 lost, 0 changed/);
  });

  it('reports another client, timeout or target url as changed, and an egress section added with its targets', async () => {
    const { before, after } = serviceVersions('orchestrator', (text) => text
      .replace('  client_id: orchestrator\n', '  client_id: orchestrator-2\n  timeout_ms: 5000\n')
      .replace('url: http://127.0.0.1:8002', 'url: http://10.0.0.7:8002'));
    assert.deepEqual(lines(before, after), [
      'changed orchestrator agent egress client_id orchestrator→orchestrator-2',
      'changed orchestrator agent egress timeout_ms 30000→5000',
      'changed orchestrator agent egress extractor http://127.0.0.1:8002→http://10.0.0.7:8002',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^~ +orchestrator +agent +egress extractor +http:\/\/127\.0\.0\.1:8002 → http:\/\/10\.0\.0\.7:8002 \(changed\)$/m);
    const added = serviceVersions('admin', (text) => `${text}egress:\n  client_id: admin\n  targets:\n    mcp: { url: http://127.0.0.1:8000, paths: [/mcp], tools: [documents_list] }\n`);
    assert.deepEqual(lines(added.before, added.after), [
      'changed admin agent egress client_id -→admin',
      'changed admin agent egress timeout_ms -→30000',
      'gained admin agent egress mcp -→http://127.0.0.1:8000',
      'gained admin agent egress mcp path /mcp refused→allowed',
      'gained admin agent egress mcp tool documents_list refused→allowed',
    ]);
  });

  it('reports nothing for egress that says the same (targets in another order, defaults written out, a trailing slash)', async () => {
    const { before, after } = serviceVersions('orchestrator', (text) => text
      .replace('  client_id: orchestrator\n  targets:\n', '  client_id: orchestrator\n  timeout_ms: 30000\n  targets:\n    mcp:\n      url: http://127.0.0.1:8000\n      paths: [/call_tool, /mcp]\n      tools: [s3_put_object, documents_create, documents_get, documents_list, documents_update, documents_claim, documents_claim_stale, processing_logs_append, processing_logs_list]\n')
      .replace(/ {4}mcp:\n {6}url: http:\/\/127\.0\.0\.1:8000\n {6}paths: \[\/mcp, \/call_tool\]\n.*\n$/, '')
      .replace(EXTRACTOR, '    extractor:\n      url: http://127.0.0.1:8002/\n      paths: [/message]\n      methods: [extract_document]\n      tools: []\n'));
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: endpoints', () => {
  it('reports an endpoint added as a gain (calls to its path are forwarded, not 404), removed as a loss', async () => {
    const { before, after } = serviceVersions('admin', (text) => text.replace('  - { path: /message, kind: jsonrpc }\n', '  - { path: /message, kind: jsonrpc }\n  - { path: /admin/revoke-all, kind: rest, method: revoke_before }\n'));
    assert.deepEqual(lines(before, after), ['gained admin * endpoint /admin/revoke-all -→rest POST revoke_before']);
    assert.deepEqual(lines(after, before), ['lost admin * endpoint /admin/revoke-all rest POST revoke_before→-']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +admin +every role +endpoint \/admin\/revoke-all +- → rest POST revoke_before$/m);
    assert.match(io.stdout, /1 change: 1 gained, 0 lost, 0 changed/);
  });

  it('reports an endpoint that takes something else (kind, rest method, HTTP method) as changed', async () => {
    const { before, after } = serviceVersions('admin', (text) => text
      .replace('{ path: /admin/revoke-token, kind: rest, method: revoke_token }', '{ path: /admin/revoke-token, kind: rest, method: revoke_subject }')
      .replace('{ path: /admin/revocations, kind: rest, method: list_revocations, http_method: GET }', '{ path: /admin/revocations, kind: rest, method: list_revocations }')
      .replace('{ path: /message, kind: jsonrpc }', '{ path: /message, kind: call_tool }'));
    assert.deepEqual(lines(before, after), [
      'changed admin * endpoint /admin/revocations rest GET list_revocations→rest POST list_revocations',
      'changed admin * endpoint /admin/revoke-token rest POST revoke_token→rest POST revoke_subject',
      'changed admin * endpoint /message jsonrpc→call_tool',
    ]);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^~ +admin +every role +endpoint \/message +jsonrpc → call_tool \(changed\)$/m);
  });

  it('reports nothing for the same endpoints in another order, or the default (/message, jsonrpc) written out', async () => {
    const { before, after } = serviceVersions('admin', (text) => text.replace(
      '  - { path: /message, kind: jsonrpc }\n  - { path: /admin/revoke-token, kind: rest, method: revoke_token }\n',
      '  - { path: /admin/revoke-token, kind: rest, method: revoke_token, http_method: POST }\n  - { path: /message }\n'));
    const archivist = join(after, 'services', 'archivist.yaml');
    const text = readFileSync(archivist, 'utf8');
    assert.doesNotMatch(text, /^endpoints:/m);
    writeFileSync(archivist, text.replace(/^methods:\n/m, 'endpoints:\n  - { path: /message, kind: jsonrpc }\nmethods:\n'));
    assert.match(readFileSync(archivist, 'utf8'), /^endpoints:/m);
    assert.deepEqual(lines(before, after), []);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 0, io.stdout);
    assert.equal(io.stdout, 'no access changes\n');
  });
});

describe('policy diff: gains of a caller holding several roles', () => {
  it('counts a removed deny as a gain when another role grants the call (a caller holding both gains it)', async () => {
    const { before, after } = versions((rbac) => rbac.replace('deny: [delete_document, revoke_token]', 'deny: [revoke_token]'));
    // What the sidecar decides for a token with both roles, before and after.
    const [old] = loadSide(join(before, 'services', 'archivist.yaml'));
    const [now] = loadSide(join(after, 'services', 'archivist.yaml'));
    assert.equal(decide(old as ServicePolicy, ['orchestrator', 'admin'], { method: 'delete_document' }).allowed, false);
    assert.equal(decide(now as ServicePolicy, ['orchestrator', 'admin'], { method: 'delete_document' }).allowed, true);
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new}`);
    assert.deepEqual(changes, ['gained archivist orchestrator method delete_document deny→none']);
    const io = bufferIo();
    await policyCommand(['diff', before, after], io);
    assert.match(io.stdout, /1 change: 1 gained, 0 lost, 0 changed/);
    // And added back: a loss for the holders of both.
    assert.deepEqual(diffServices(loadSide(after), loadSide(before)).map((c) => c.change), ['lost']);
  });

  it('counts a removed argument restriction as a gain (any arguments now), an added one as a loss', () => {
    const { before, after } = versions((rbac) => rbac.replace(/ {8}s3_put_object:\n {10}type: object\n {10}required: \[key\]\n {10}properties:\n {12}key: \{ type: string, pattern: "\^uploads\/" \}\n/, ''));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new}`);
    assert.deepEqual(changes, ['gained mcp orchestrator tool s3_put_object allow-args→allow']);
    assert.deepEqual(diffServices(loadSide(after), loadSide(before)).map((c) => c.change), ['lost']);
  });
});

describe('policy diff: a side that decides nothing', () => {
  it('refuses (exit 2) an rbac file no service under its directory uses, rather than saying no access changes', async () => {
    const { before, after } = versions(edit);
    const shared = tempDirSync('diff-rbac');
    cpSync(join(before, 'rbac.yaml'), join(shared, 'old.yaml'));
    cpSync(join(after, 'rbac.yaml'), join(shared, 'new.yaml'));
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', join(shared, 'old.yaml'), join(shared, 'new.yaml'), '--exit-code'], io), 2, io.stdout);
    assert.match(io.stderr, /no service policy .* uses .*new\.yaml/);
    assert.equal(io.stdout, '');
  });

  it('refuses (exit 2) a directory that holds no service policy, as policy check does', async () => {
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', tempDirSync('diff-empty'), tempDirSync('diff-empty'), '--exit-code'], io), 2, io.stdout);
    assert.match(io.stderr, /no service policy/);
  });
});

describe('policy diff: several files serving one service name', () => {
  it('compares each with its counterpart (by file name), rather than the first of them only', () => {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    for (const dir of [before, after]) cpSync(join(dir, 'services', 'mcp.yaml'), join(dir, 'services', 'mcp-eu.yaml'));
    const file = join(after, 'services', 'mcp.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('  s3_get_object: {}\n', '  s3_get_object: {}\n  secrets_dump: {}\n'));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name}`);
    assert.deepEqual(changes, ['gained mcp (mcp.yaml) admin tool secrets_dump']);
  });
});

describe('policy diff: a service only one version holds', () => {
  /** The shipped directory as is, and without the archivist's policy file. */
  function withoutArchivist(): { before: string; after: string } {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    rmSync(join(after, 'services', 'archivist.yaml'));
    return { before, after };
  }

  it('reports a service removed as a loss on a line of its own, then the public routes, endpoints and grants it took with it', async () => {
    const { before, after } = withoutArchivist();
    const changes = lines(before, after);
    assert.deepEqual(changes.slice(0, 5), [
      'lost archivist * service removed enforce→-',
      'lost archivist anonymous public_route GET /.well-known/agent-card.json public→-',
      'lost archivist anonymous public_route GET /card public→-',
      'lost archivist anonymous public_route GET /health public→-',
      'lost archivist * endpoint /message jsonrpc→-',
    ]);
    assert.ok(changes.includes('lost archivist agent egress mcp tool s3_delete_object allowed→refused'), changes.join('\n'));
    assert.ok(changes.includes('lost archivist viewer method get_document allow→none'), changes.join('\n'));
    assert.ok(changes.every((line) => line.split(' ')[1] === 'archivist'), changes.join('\n'));
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^- +archivist +every role +service removed +enforce → -$/m);
    assert.match(io.stdout, /^- +archivist +anonymous +public_route GET \/health +public → -$/m);
  });

  it('reports a service added as a gain (a new surface: its public routes, endpoints and grants), in text and JSON, failing --exit-code', async () => {
    const { before, after } = withoutArchivist();
    const changes = lines(after, before);
    assert.deepEqual(changes.slice(0, 5), [
      'gained archivist * service added -→enforce',
      'gained archivist anonymous public_route GET /.well-known/agent-card.json -→public',
      'gained archivist anonymous public_route GET /card -→public',
      'gained archivist anonymous public_route GET /health -→public',
      'gained archivist * endpoint /message -→jsonrpc',
    ]);
    assert.ok(changes.includes('gained archivist viewer method get_document none→allow'), changes.join('\n'));
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', after, before, '--exit-code'], io), 1, io.stdout);
    assert.match(io.stdout, /^\+ +archivist +every role +service added +- → enforce$/m);
    assert.match(io.stdout, /^\+ +archivist +anonymous +public_route GET \/card +- → public$/m);
    const json = bufferIo();
    assert.equal(await policyCommand(['diff', after, before, '--format', 'json', '--exit-code'], json), 1, json.stdout);
    const entries = JSON.parse(json.stdout) as { service: string; role: string; kind: string; name: string; old: string; new: string; change: string }[];
    assert.deepEqual(entries[0], { service: 'archivist', role: '*', kind: 'service', name: 'added', old: '-', new: 'enforce', change: 'gained' });
    assert.deepEqual(entries.filter((entry) => entry.kind === 'service').length, 1);
    // A service added in dry-run says so: every call it refuses would be forwarded.
    const dryRun = join(before, 'services', 'archivist.yaml');
    writeFileSync(dryRun, readFileSync(dryRun, 'utf8').replace('mode: enforce', 'mode: dry-run'));
    assert.equal(lines(after, before)[0], 'gained archivist * service added -→dry-run');
  });
});
