import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileCidrs, parseCidr, sourceAddress } from '../../../proxy/http/cidr.js';

describe('source address for the stolen-token check', () => {
  const trusted = compileCidrs(['10.0.0.0/8', '::1']);

  it('is the peer when the peer is not a trusted proxy, whatever X-Forwarded-For says', () => {
    assert.equal(sourceAddress('192.0.2.5', '1.2.3.4', trusted), '192.0.2.5');
    assert.equal(sourceAddress('::ffff:192.0.2.5', undefined, trusted), '192.0.2.5');
  });

  it('behind trusted proxies: the right-most entry no trusted proxy added', () => {
    assert.equal(sourceAddress('10.1.1.1', '6.6.6.6, 198.51.100.7', trusted), '198.51.100.7');
    assert.equal(sourceAddress('10.1.1.1', ['6.6.6.6, 198.51.100.7', '10.2.2.2'], trusted), '198.51.100.7');
    assert.equal(sourceAddress('::1', '10.3.3.3', trusted), '10.3.3.3');
  });

  it('stops at garbage instead of believing what lies left of it', () => {
    assert.equal(sourceAddress('10.1.1.1', '198.51.100.7, not-an-ip', trusted), '10.1.1.1');
  });

  it('parses IPs and CIDRs and rejects the rest', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.equal(parseCidr('10.0.0.0/33'), undefined);
    assert.equal(parseCidr('example.com'), undefined);
  });
});
