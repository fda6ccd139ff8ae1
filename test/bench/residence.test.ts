import assert from 'node:assert/strict';
import { test } from 'node:test';
import { residenceOf } from '../../bench/residence.js';

// A classic little-endian pcap of Ethernet-framed IPv4/TCP segments, as tcpdump writes on lo.
function pcap(packets: { ms: number; from: number; to: number; payload: string }[]): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(160, 16);
  header.writeUInt32LE(1, 20);
  const records = packets.map(({ ms, from, to, payload }) => {
    const ethernet = Buffer.alloc(14);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    const tcp = Buffer.alloc(32);
    tcp.writeUInt16BE(from, 0);
    tcp.writeUInt16BE(to, 2);
    tcp[12] = 8 << 4;
    const frame = Buffer.concat([ethernet, ip, tcp, Buffer.from(payload, 'latin1')]);
    const record = Buffer.alloc(16);
    record.writeUInt32LE(Math.floor(ms / 1000), 0);
    record.writeUInt32LE(Math.round((ms % 1000) * 1000), 4);
    record.writeUInt32LE(frame.length, 8);
    record.writeUInt32LE(frame.length, 12);
    return Buffer.concat([record, frame]);
  });
  return Buffer.concat([header, ...records]);
}

const ports = { proxyPort: 8000, upstreamPort: 9000 };
const post = (n: number): string => `POST /message?n=${n} HTTP/1.1\r\nhost: x\r\n\r\n`;
const answer = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n';

test('pairs each request with its own forwarded leg across connections, and subtracts the agent', () => {
  const capture = pcap([
    // Requests 1 and 2 arrive on two client connections; the proxy forwards 2 before 1, on two upstream connections.
    { ms: 1000, from: 50001, to: 8000, payload: post(1) },
    { ms: 1001, from: 50002, to: 8000, payload: post(2) },
    { ms: 1002, from: 60002, to: 9000, payload: post(2) },
    { ms: 1003, from: 60001, to: 9000, payload: post(1) },
    { ms: 1004, from: 9000, to: 60002, payload: answer },
    { ms: 1010, from: 9000, to: 60001, payload: answer },
    // The proxy answers 2 in two segments: the last one counts.
    { ms: 1005, from: 8000, to: 50002, payload: answer },
    { ms: 1006, from: 8000, to: 50002, payload: '{}' },
    { ms: 1011, from: 8000, to: 50001, payload: answer },
    // Request 3 reuses connection 50001 and upstream 60002: its answer must not be taken for request 1's.
    { ms: 1020, from: 50001, to: 8000, payload: post(3) },
    { ms: 1021, from: 60002, to: 9000, payload: post(3) },
    { ms: 1022, from: 9000, to: 60002, payload: answer },
    { ms: 1030, from: 8000, to: 50001, payload: answer },
  ]);
  // 1: 11 in the proxy in all, 7 at the agent → 4; 2: 5 in all, 2 at the agent → 3; 3: 10 - 1 → 9.
  const all = residenceOf(capture, { ...ports, firstCounted: 0 });
  assert.equal(all.samples, 3);
  assert.equal(all.p50, 4);
  assert.equal(all.max, 9);
  // Requests tagged below firstCounted (the generator's warm-up) are left out.
  const counted = residenceOf(capture, { ...ports, firstCounted: 2 });
  assert.deepEqual([counted.samples, counted.p50, counted.max], [2, 9, 9]);
});

test('a request whose answer was not captured is left unpaired, not guessed', () => {
  const capture = pcap([
    { ms: 1000, from: 50001, to: 8000, payload: post(1) },
    { ms: 1001, from: 60001, to: 9000, payload: post(1) },
    { ms: 1002, from: 9000, to: 60001, payload: answer },
  ]);
  assert.equal(residenceOf(capture, { ...ports, firstCounted: 0 }).samples, 0);
});

test('refuses a capture that is not a loopback pcap', () => {
  assert.throws(() => residenceOf(Buffer.alloc(24), { ...ports, firstCounted: 0 }), /pcap/);
});
