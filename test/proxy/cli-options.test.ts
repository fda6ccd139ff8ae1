import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envSwitch } from '../../proxy/cli-options.js';

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
