import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { badBaseUrl, badHttpUrl, envSwitch } from '../../proxy/cli-options.js';

describe('envSwitch: an on/off environment variable', () => {
  it('reads 1, true, yes and on as on, in any case and with blanks around', () => {
    for (const value of ['1', 'true', 'TRUE', 'Yes', 'on', ' true ']) assert.equal(envSwitch('X', { X: value }), true, value);
  });

  it('reads 0, false, no, off, empty and unset as off', () => {
    for (const value of ['0', 'false', 'No', 'OFF', '']) assert.equal(envSwitch('X', { X: value }), false, value);
    assert.equal(envSwitch('X', {}), false);
  });

  it('refuses anything else with a message naming the variable and the value', () => {
    for (const value of ['ture', '2', 'enabled', 'y']) {
      assert.equal(envSwitch('CA_A2A_NO_WATCH', { CA_A2A_NO_WATCH: value }), `CA_A2A_NO_WATCH must be 1, true, yes or on (or 0, false, no, off), got '${value}'`);
    }
  });
});

describe('badBaseUrl: a URL that a path is appended to', () => {
  it('accepts http(s) origins with an optional path, and options not given', () => {
    assert.equal(badBaseUrl([{ name: '--egress', value: 'http://127.0.0.1:15001' }, undefined, { name: 'X', value: ['https://a.example.com/realms/r', 'http://[::1]:8080/'] }]), undefined);
  });

  it('names the first option that is not one, the value shown without its password', () => {
    assert.equal(badBaseUrl([{ name: '--egress', value: 'ftp://x' }]), "--egress must be an http(s) URL, got 'ftp://x'");
    assert.equal(badBaseUrl([{ name: '--egress', value: 'http://ok' }, { name: 'Y', value: ['http://ok', 'http://h/p?q'] }]), "Y is an origin with an optional path, without a query, fragment or user, got 'http://h/p?q'");
    const message = badBaseUrl([{ name: 'Z', value: 'https://user:hunter2@h.example.com/p' }]) ?? '';
    assert.match(message, /^Z is an origin with an optional path, without a query, fragment or user, got 'https:\/\/\*\*\*@h\.example\.com\/p'$/);
    assert.doesNotMatch(message, /hunter2|user:/);
  });

  it('never repeats a password in a value that is not an http(s) URL either, parseable or not', () => {
    assert.equal(badHttpUrl([{ name: '--issuer', value: 'ftp://op:hunter2@idp/realms/r' }]), "--issuer must be an http(s) URL, got 'ftp://***@idp/realms/r'");
    assert.equal(badHttpUrl([{ name: '--upstream', value: 'http//op:hunter2@127.0.0.1:9000' }]), "--upstream must be an http(s) URL, got 'http//***@127.0.0.1:9000'");
    assert.equal(badHttpUrl([{ name: '--upstream', value: 'http://op:hunter2@[127.0.0.1' }]), "--upstream must be an http(s) URL, got 'http://***@[127.0.0.1'");
  });

  // A password typed as is may hold '/', '?', '#' or '@', where a URL parser ends the user part (or
  // the whole authority) early: everything up to the last '@' is taken for credentials.
  it("never repeats a password holding '/', '?', '#' or '@', whether the URL parses or not", () => {
    for (const url of ['http://op:hunt/er2@127.0.0.1:9000', 'http://op:hunt?er2@127.0.0.1:9000', 'http://op:hunt#er2@127.0.0.1:9000', 'ftp://op:hunt@er2@idp', 'ftp://op:1234/er2@idp/r', 'http:op:hunt/er2@127.0.0.1:9000']) {
      const message = badHttpUrl([{ name: '--upstream', value: url }]) ?? badBaseUrl([{ name: '--upstream', value: url }]) ?? '';
      assert.match(message, /^--upstream .*\*\*\*@/, url);
      assert.doesNotMatch(message, /hunt|er2|1234/, url);
    }
  });
});
