import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * How long each request spent inside a proxy, read off the wire: tcpdump captures the loopback
 * packets that carry data on the proxy's port and on the agent's, and for each request
 * residence = (last byte of the answer to the client - first byte of the request from it)
 *           - (last byte of the agent's answer - first byte of the forwarded request).
 * The generator tags each request with its index (`?n=I` in the request line, which every proxy
 * here forwards unchanged), so the two legs of one request are paired even though the proxy
 * spreads requests over its own pool of connections to the agent. On loopback a packet is stamped
 * in the sender's system call, so a request that waits in the proxy's socket because its core is
 * busy or taken away is charged to the proxy, and nothing the generator or the agent does is.
 * That is the proxy's added latency by itself, where the end-to-end difference between two runs
 * (through it, and straight to the agent) also carries both runs' noise from the generator's core.
 */
export interface Residence { samples: number; p50: number; p99: number; max: number; dropped: number }

/** Whether tcpdump can capture here (installed, and allowed to open the loopback interface). */
export async function captureAvailable(): Promise<boolean> {
  const probe = tcpdump(['-i', 'lo', '-c', '1', '-w', '/dev/null', 'tcp port 1']);
  const started = await probe.listening.catch(() => false);
  probe.child.kill('SIGINT');
  await once(probe.child, 'exit').catch(() => undefined);
  return started;
}

/** tcpdump with what it says on stderr kept; `listening` is false when it exits before it listens. */
function tcpdump(args: string[]): { child: ChildProcess; listening: Promise<boolean>; said: () => string } {
  const child = spawn('tcpdump', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  const listening = new Promise<boolean>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => resolve(false));
    child.stderr?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (said.includes('listening on')) resolve(true);
    });
  });
  return { child, listening, said: () => said };
}

/**
 * Runs `run` while capturing on `core`; requests tagged below `firstCounted` of its result (the
 * generator's warm-up) are left out.
 */
export async function withResidence<T>(options: { dir: string; proxyPort: number; upstreamPort: number; core: number; firstCounted: (result: T) => number }, run: () => Promise<T>): Promise<{ result: T; residence: Residence }> {
  const file = join(options.dir, `capture-${options.proxyPort}.pcap`);
  // Only segments that carry data; 160 bytes of each reach past the request line.
  const filter = `tcp and (port ${options.proxyPort} or port ${options.upstreamPort}) and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)`;
  const capture = tcpdump(['-i', 'lo', '-n', '-s', '160', '-B', '65536', '-w', file, filter]);
  try {
    if (!(await capture.listening)) throw new Error(`tcpdump did not start: ${capture.said()}`);
    // On the generator's core, away from the proxy's.
    await exec('taskset', ['-pc', String(options.core), String(capture.child.pid)]);
    const result = await run();
    // tcpdump hands packets over in blocks, a partial one after its 1 s timeout: wait it out,
    // or the last requests' packets are never written.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    capture.child.kill('SIGINT');
    await once(capture.child, 'exit');
    // A packet the kernel dropped leaves its request unpaired: reported, not guessed.
    const dropped = Number(/(\d+) packets? dropped by kernel/.exec(capture.said())?.[1] ?? Number.NaN);
    const ports = { ...options, firstCounted: options.firstCounted(result) };
    return { result, residence: { ...residenceOf(await readFile(file), ports), dropped } };
  } finally {
    capture.child.kill('SIGINT');
    await rm(file, { force: true });
  }
}

interface Leg { start: number; end: number }
interface Conversation { requests: number[]; answering: number | undefined }

/** Pairs requests and answers in a classic pcap file of loopback (Ethernet-framed) IPv4 packets. */
export function residenceOf(pcap: Buffer, ports: { proxyPort: number; upstreamPort: number; firstCounted: number }): Omit<Residence, 'dropped'> {
  if (pcap.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error('not a little-endian microsecond pcap file');
  const linkType = pcap.readUInt32LE(20);
  if (linkType !== 1) throw new Error(`unexpected link type ${linkType} on lo`);
  const inbound = new Map<number, Leg>();
  const upstream = new Map<number, Leg>();
  const conversations = new Map<string, Conversation>();
  for (let at = 24; at + 16 <= pcap.length;) {
    const time = pcap.readUInt32LE(at) * 1e3 + pcap.readUInt32LE(at + 4) / 1e3;
    const captured = pcap.readUInt32LE(at + 8);
    const packet = pcap.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    const ip = packet.subarray(14);
    const tcp = ip.subarray(((ip[0] as number) & 0xf) * 4);
    const [source, destination] = [tcp.readUInt16BE(0), tcp.readUInt16BE(2)];
    const payload = tcp.subarray(((tcp[12] as number) >> 4) * 4);
    const toProxy = destination === ports.proxyPort;
    const toAgent = destination === ports.upstreamPort;
    // One conversation per connection: the client's port on the proxy's side, the proxy's on the agent's.
    const legs = toProxy || source === ports.proxyPort ? inbound : upstream;
    const key = `${legs === inbound ? 'in' : 'up'}:${toProxy || toAgent ? source : destination}`;
    const conversation = conversations.get(key) ?? { requests: [], answering: undefined };
    conversations.set(key, conversation);
    if (toProxy || toAgent) {
      const tag = /^POST \S*[?&]n=(\d+)/.exec(payload.toString('latin1'));
      if (!tag) continue;
      const n = Number(tag[1]);
      conversation.requests.push(n);
      legs.set(n, { start: time, end: Number.NaN });
    } else {
      // HTTP/1.1 without pipelining: the answers on a connection come in the order of its requests.
      if (payload.toString('latin1', 0, 5) === 'HTTP/') conversation.answering = conversation.requests.shift();
      const leg = conversation.answering === undefined ? undefined : legs.get(conversation.answering);
      if (leg) leg.end = time;
    }
  }
  const residences: number[] = [];
  for (const [n, leg] of inbound) {
    const agent = upstream.get(n);
    if (n < ports.firstCounted || !agent || Number.isNaN(leg.end) || Number.isNaN(agent.end)) continue;
    residences.push(leg.end - leg.start - (agent.end - agent.start));
  }
  const sorted = Float64Array.from(residences).sort();
  const at = (p: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN) * 100) / 100;
  return { samples: sorted.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}
