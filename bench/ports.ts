import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The kernel's range for outgoing connections' local ports (Linux), else its default. */
function ephemeralRange(): readonly [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // not Linux: fall through
  }
  return [32768, 60999];
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free port for a child process to listen on, chosen below the kernel's ephemeral range. A port
 * the OS hands out with `listen(0)` comes from that range, and between this check and the child's
 * own listen an outgoing connection (the load generator opens hundreds) may take it: a bench run
 * of 2026-11-30 died of that EADDRINUSE after eleven minutes.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  const span = Math.max(1_000, low - floor);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = floor + Math.floor(Math.random() * span);
    if (port < low && await bindable(port)) return port;
  }
  throw new Error(`no free port found between ${floor} and ${low}`);
}
