import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import type { Sidecar } from '../../../proxy/sidecar.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { DOC_ID, rpc } from '../../helpers/harness.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { distinct, startTarget, type Target } from '../../helpers/token-target.js';
import { startEgressSidecar } from './helpers.js';


// On a 401 the egress drops its token, gets a new one and sends the call again. A target that
// refuses every token (its clock, its keys or its audience wrong) so made each call ask the issuer
// for two tokens: the sidecar flooded its own issuer at twice its agent's call rate.
describe('egress: a target that refuses every token', () => {
  let issuer: DevIssuer;
  let refusing: Target;
  let revoking: Target;
  let orchestrator: Sidecar;
  const audit = new AuditCapture();

  before(async () => {
    const dataDir = tempDirSync('egress-401');
    issuer = await startIssuer({ port: 0, dataDir });
    refusing = await startTarget(() => true);
    // Refuses the first token it sees (revoked, say) and accepts the next ones.
    revoking = await startTarget((token, seen) => token === (seen[0] ?? token));
    orchestrator = await startEgressSidecar({
      issuer: issuer.issuer,
      clientSecret: (await loadClientSecrets(dataDir)).orchestrator,
      serviceUrls: { validator: refusing.url, extractor: revoking.url },
      logDestination: audit,
    });
  });
  after(async () => {
    await orchestrator?.close();
    refusing?.close();
    revoking?.close();
    await issuer?.close();
  });

  const call = async (target: 'validator' | 'extractor'): Promise<number> => {
    const method = target === 'validator' ? 'validate_document' : 'extract_document';
    const res = await request(`${orchestrator.egressUrl}/${target}/message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(rpc(method, { document_id: DOC_ID })),
    });
    await res.body.dump();
    return res.statusCode;
  };

  it('costs a bounded number of new tokens, not two a call, while another target still gets its retry', async () => {
    // The first 401: the call goes once more, with a new token, refused too.
    assert.equal(await call('validator'), 401);
    assert.equal(refusing.tokens.length, 2);
    assert.equal(distinct(refusing.tokens), 2, 'the second went with a new token');

    // The next calls go once each, with the token the target already refused: no new token.
    for (let i = 0; i < 10; i++) assert.equal(await call('validator'), 401);
    assert.equal(refusing.tokens.length, 12, 'each call sent once');
    assert.equal(distinct(refusing.tokens), 2, 'no new token for these calls');
    assert.equal(audit.events('egress_token_refused').length, 1, 'one line when the target refused a new token too');

    // Another target refusing that token (revoked) gets its one retry with a new token.
    assert.equal(await call('extractor'), 200);
    assert.equal(revoking.tokens.length, 2);
    assert.equal(revoking.tokens[0], refusing.tokens.at(-1));
    assert.notEqual(revoking.tokens[1], revoking.tokens[0]);
    assert.equal(audit.events('egress_call').at(-1)?.['token_renewed'], true);
    // Which it keeps using: it is the token in force now.
    assert.equal(await call('extractor'), 200);
    assert.equal(revoking.tokens.at(-1), revoking.tokens[1]);

    // The token changed for another reason: the refusing target's next 401 gets one retry again.
    assert.equal(await call('validator'), 401);
    assert.deepEqual(refusing.tokens.slice(12, 13), revoking.tokens.slice(1, 2));
    assert.equal(refusing.tokens.length, 14);
    assert.equal(distinct(refusing.tokens), 4);
  });
});
