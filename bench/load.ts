import autocannon from 'autocannon';
import { signedHeaders } from '../proxy/client/signed-headers.js';
import { createProofKey } from '../proxy/integrity/proof.js';

/**
 * The load generator, in its own process (and on its own core): autocannon with keep-alive.
 * With `proofs`, every request carries its own pre-signed DPoP proof, as real clients do.
 */
interface LoadConfig {
  url: string;
  body: string;
  token?: string;
  connections: number;
  duration: number;
  rate?: number;
  proofs?: number;
}

const config = JSON.parse(process.argv[2] as string) as LoadConfig;
const headers: Record<string, string> = { 'content-type': 'application/json' };
if (config.token) headers.authorization = `Bearer ${config.token}`;

let requests: autocannon.Request[] | undefined;
if (config.proofs && config.token) {
  const key = await createProofKey();
  const signed: Record<string, string>[] = [];
  for (let i = 0; i < config.proofs; i++) {
    signed.push(await signedHeaders({ key, accessToken: config.token, tokenType: 'Bearer', method: 'POST', url: config.url, body: config.body }));
  }
  let next = 0;
  requests = [{ setupRequest: (request) => ({ ...request, headers: { ...request.headers, ...signed[next++ % signed.length] } }) }];
}

const result = await autocannon({
  url: config.url,
  method: 'POST',
  headers,
  body: config.body,
  connections: config.connections,
  duration: config.duration,
  ...(config.rate ? { overallRate: config.rate } : {}),
  ...(requests ? { requests } : {}),
});
process.stdout.write(`${JSON.stringify({
  rps: result.requests.average,
  p50: result.latency.p50,
  p99: result.latency.p99,
  non2xx: result.non2xx,
  errors: result.errors,
  total: result.requests.total,
})}\n`);
