import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DENIALS, DENIAL_CODES } from '../../proxy/denials.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map<string, { status: number; rpcCode: number; event: string }>();
for (const match of doc.matchAll(/^\| `([a-z]+\.[a-z_]+)` \| (\d+) \| (-\d+) \| `([a-z_]+)` \|/gm)) {
  rows.set(match[1] as string, { status: Number(match[2]), rpcCode: Number(match[3]), event: match[4] as string });
}

describe('denial registry and docs/errors.md', () => {
  it('documents every code with its status, JSON-RPC code and audit event', () => {
    for (const code of DENIAL_CODES) {
      const row = rows.get(code);
      assert.ok(row, `docs/errors.md lacks a row for ${code}`);
      assert.deepEqual(row, { status: DENIALS[code].status, rpcCode: DENIALS[code].rpcCode, event: DENIALS[code].event }, code);
    }
  });

  it('lists no code that does not exist', () => {
    for (const code of rows.keys()) assert.ok(Object.hasOwn(DENIALS, code), `docs/errors.md lists dead code ${code}`);
  });

  it("keeps the seed's JSON-RPC codes", () => {
    assert.equal(DENIALS['authn.token_missing'].rpcCode, -32010);
    assert.equal(DENIALS['authz.method_denied'].rpcCode, -32011);
    assert.equal(DENIALS['transport.body_too_large'].rpcCode, -32012);
    assert.equal(DENIALS['params.invalid'].rpcCode, -32602);
    assert.equal(DENIALS['jsonrpc.parse_error'].rpcCode, -32700);
    assert.equal(DENIALS['jsonrpc.invalid_request'].rpcCode, -32600);
  });
});
