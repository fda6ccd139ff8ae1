import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { authnLayer } from '../proxy/layers/authn.js';
import { KeySource } from '../proxy/auth/key-source.js';
import { createContext } from '../proxy/context.js';
import { createSidecarMetrics } from '../proxy/observe/metrics.js';
import { loadPolicy } from '../proxy/policy/load.js';
import { startBenchIssuer } from './jwks.js';

/**
 * The cost of the authentication layer alone, per request, in process: a token seen for the
 * first time (RS256 verified, its claims checked, the result cached) and one seen again (the
 * cache), against a JWKS the layer fetched once.
 */
export async function tokenCosts(iterations = 3000): Promise<string> {
  const issuer = await startBenchIssuer();
  try {
    const policy = loadPolicy(new URL('policy.yaml', import.meta.url).pathname, { issuer: issuer.issuer });
    const keys = new KeySource(policy.auth, createSidecarMetrics(), 'bench');
    const warmed = await keys.warm();
    if (warmed) throw warmed;
    const layer = authnLayer(policy, { keys, now: Date.now });
    const tokens = await Promise.all(Array.from({ length: iterations }, () => issuer.sign()));
    const contexts = (): ReturnType<typeof createContext>[] => tokens.map((token) => {
      const req = new IncomingMessage(new Socket());
      req.method = 'POST';
      req.headers = { host: '127.0.0.1:8004', authorization: `Bearer ${token}` };
      req.rawHeaders = ['host', '127.0.0.1:8004', 'authorization', `Bearer ${token}`];
      return createContext(req, policy, 'r', '127.0.0.1', 0);
    });
    const perRequestUs = async (batch: ReturnType<typeof createContext>[]): Promise<number> => {
      const started = performance.now();
      for (const ctx of batch) {
        const verdict = await layer.check(ctx);
        if (verdict !== undefined) throw new Error(`token refused in the benchmark: ${JSON.stringify(verdict)}`);
      }
      return ((performance.now() - started) * 1000) / batch.length;
    };
    const firstUs = await perRequestUs(contexts());
    const againUs = await perRequestUs(contexts());
    return `Authentication per request, in process (RS256, ${iterations} tokens): a token seen for the first time ${firstUs.toFixed(0)} µs (verified and cached), seen again ${againUs.toFixed(1)} µs (the cache).`;
  } finally {
    issuer.close();
  }
}
