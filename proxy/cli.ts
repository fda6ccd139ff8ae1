import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseCidr } from './http/cidr.js';
import { badBaseUrl, badHttpUrl, badListen, envSwitch, flagOrEnv, flagsOrEnvList, type FlagOrEnv } from './cli-options.js';
import { isPolicyLoadError, formatProblem } from './policy/errors.js';
import { adminPortFor, isShippedService, SHIPPED_SERVICES, shippedPolicyFile } from './services.js';
import { startSidecar, type Sidecar } from './sidecar.js';
import { storeOptionsFromEnv } from './stores/backends.js';
import { stopSignal } from './stop-signal.js';

/** Longest drain a flag may ask for: ten minutes, well past any runtime's stop timeout (ECS allows 120 s). */
const MAX_DRAIN_TIMEOUT_MS = 600_000;

const HELP = `usage: ca-a2a sidecar (--service NAME | --policy FILE) [options]

  --service NAME         a shipped service: ${Object.keys(SHIPPED_SERVICES).join(', ')} (CA_A2A_SERVICE)
  --policy FILE          any other service, from its own policy file (CA_A2A_POLICY); either flag
                         wins over both variables
  --listen HOST:PORT     proxied port (CA_A2A_LISTEN; default 127.0.0.1:<service port>, with --policy 127.0.0.1:8080)
  --upstream URL         the agent (CA_A2A_UPSTREAM; default: the policy's upstream)
  --admin-listen H:P     /ready, /healthz, /metrics (CA_A2A_ADMIN_LISTEN; default port + 1100)
  --issuer URL           OIDC issuer (CA_A2A_ISSUER; default: the policy's issuer)
  --public-url URL       URL clients address this service by, repeatable (CA_A2A_PUBLIC_URL, comma-separated)
  --egress-listen H:P    egress listener for the agent, loopback only (CA_A2A_EGRESS_LISTEN)
  --service-url N=URL    where target service N is, repeatable (CA_A2A_SERVICE_URLS, comma-separated)
  --trusted-proxy CIDR   a load balancer or proxy in front, repeatable, beside the policy's
                         anomaly.trusted_proxies: the caller it names in X-Forwarded-For is the
                         audit lines' client_ip and the stolen-token alarm's source
                         (CA_A2A_TRUSTED_PROXIES, comma-separated)
  --allow-http-issuer    egress may get tokens from a plain-http issuer off this host, on a network
                         that is trusted or encrypts (ECS Service Connect TLS) (CA_A2A_ALLOW_HTTP_ISSUER=1)
  --no-watch             do not hot-reload the policy files (CA_A2A_NO_WATCH=1); SIGHUP still reloads them
  --drain-timeout-ms MS  on SIGTERM, how long in-flight requests may take before they are cut
                         (CA_A2A_DRAIN_TIMEOUT_MS; default 25000, at most 600000); keep it under
                         the runtime's stop timeout (ECS stopTimeout, compose stop_grace_period)
  --shadow-policy FILE   evaluate a candidate policy beside the enforced one and count and log
                         each request they decide differently; never enforced (CA_A2A_SHADOW_POLICY)

environment: REDIS_URL (shared rate limits, replay ids, revocation push), DATABASE_URL (durable
revocations); unset: embedded, CA_A2A_DATA_DIR/revocations.jsonl (default ./.ca-a2a).
CA_A2A_CLIENT_SECRET or CA_A2A_CLIENT_SECRET_FILE: the secret of the policy's egress.client_id.
CA_A2A_KEY_PREFIX names this deployment's Redis keys (default ca-a2a): sidecars that share budgets,
replay ids and revocations use the same one, separate deployments on one Redis each their own.
CA_A2A_LOG_LEVEL (default info): granted requests' audit lines are info, refusals' warn, so a
level above warn drops the refusals' audit lines too (to drop only the granted ones, set
audit: { granted: false } in the policy).
`;

function readClientSecret(): string | undefined {
  const file = process.env.CA_A2A_CLIENT_SECRET_FILE;
  return file ? readFileSync(file, 'utf8').trim() : process.env.CA_A2A_CLIENT_SECRET;
}

function parseServiceUrls(option: FlagOrEnv<readonly string[]>): Record<string, string> {
  const urls: Record<string, string> = {};
  for (const entry of option.value) {
    const at = entry.indexOf('=');
    if (at <= 0) throw new Error(`${option.name} expects NAME=URL, got '${entry}'`);
    urls[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return urls;
}

/** `ca-a2a sidecar`: runs until SIGINT/SIGTERM, then drains in-flight requests and exits. */
export async function sidecarCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        // An exported-but-empty variable means unset, as for every command. No environment
        // defaults for the values checked below: they are read there (flagOrEnv), so that a bad
        // one is reported under the name of the variable it came from. None for --service and
        // --policy either: a flag must win over either variable (below).
        service: { type: 'string' },
        policy: { type: 'string' },
        listen: { type: 'string' },
        upstream: { type: 'string' },
        'admin-listen': { type: 'string' },
        issuer: { type: 'string' },
        'public-url': { type: 'string', multiple: true },
        'egress-listen': { type: 'string' },
        'service-url': { type: 'string', multiple: true },
        'trusted-proxy': { type: 'string', multiple: true },
        'no-watch': { type: 'boolean' },
        'drain-timeout-ms': { type: 'string' },
        'allow-http-issuer': { type: 'boolean' },
        'shadow-policy': { type: 'string', default: process.env.CA_A2A_SHADOW_POLICY || undefined },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`ca-a2a sidecar: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // --service or --policy on the command line wins over both CA_A2A_SERVICE and CA_A2A_POLICY.
  const flagged = values.service !== undefined || values.policy !== undefined;
  const service = flagged ? values.service : process.env.CA_A2A_SERVICE || undefined;
  const policy = flagged ? values.policy : process.env.CA_A2A_POLICY || undefined;
  if ((service === undefined) === (policy === undefined)) {
    process.stderr.write(`ca-a2a sidecar: give exactly one of --service or --policy\n\n${HELP}`);
    return 2;
  }
  if (service !== undefined && !isShippedService(service)) {
    process.stderr.write(`ca-a2a sidecar: unknown service '${service}' (shipped: ${Object.keys(SHIPPED_SERVICES).join(', ')}); use --policy FILE for others\n`);
    return 2;
  }
  const listenOption = flagOrEnv('--listen', values.listen, 'CA_A2A_LISTEN');
  const upstream = flagOrEnv('--upstream', values.upstream, 'CA_A2A_UPSTREAM');
  const adminListen = flagOrEnv('--admin-listen', values['admin-listen'], 'CA_A2A_ADMIN_LISTEN');
  const issuer = flagOrEnv('--issuer', values.issuer, 'CA_A2A_ISSUER');
  const egressListen = flagOrEnv('--egress-listen', values['egress-listen'], 'CA_A2A_EGRESS_LISTEN');
  const publicUrls = flagsOrEnvList('--public-url', values['public-url'], 'CA_A2A_PUBLIC_URL');
  const serviceUrlList = flagsOrEnvList('--service-url', values['service-url'], 'CA_A2A_SERVICE_URLS');
  const trustedProxies = flagsOrEnvList('--trusted-proxy', values['trusted-proxy'], 'CA_A2A_TRUSTED_PROXIES');
  const drainTimeout = flagOrEnv('--drain-timeout-ms', values['drain-timeout-ms'], 'CA_A2A_DRAIN_TIMEOUT_MS');
  let serviceUrls: Record<string, string>;
  try {
    serviceUrls = parseServiceUrls(serviceUrlList);
  } catch (error) {
    process.stderr.write(`ca-a2a sidecar: ${(error as Error).message}\n`);
    return 2;
  }
  // The policy file's URLs are checked when it loads; these replace them after that check.
  const invalid = badHttpUrl([issuer, upstream, publicUrls, { ...serviceUrlList, value: Object.values(serviceUrls) }]);
  if (invalid !== undefined) {
    process.stderr.write(`ca-a2a sidecar: ${invalid}\n`);
    return 2;
  }
  // The expected htu is this URL joined with the request's path: a query, a fragment or a user in
  // it would make every proof's htu mismatch, each refused as if the clients were wrong.
  const notBase = badBaseUrl([publicUrls]);
  if (notBase !== undefined) {
    process.stderr.write(`ca-a2a sidecar: ${notBase}\n`);
    return 2;
  }
  const notCidr = trustedProxies.value.find((entry) => parseCidr(entry) === undefined);
  if (notCidr !== undefined) {
    process.stderr.write(`ca-a2a sidecar: ${trustedProxies.name} must be an IP address or CIDR, got '${notCidr}'\n`);
    return 2;
  }
  const notAddress = badListen([listenOption, adminListen, egressListen]);
  if (notAddress !== undefined) {
    process.stderr.write(`ca-a2a sidecar: ${notAddress}\n`);
    return 2;
  }
  if (drainTimeout !== undefined && !(/^\d{1,6}$/.test(drainTimeout.value) && Number(drainTimeout.value) <= MAX_DRAIN_TIMEOUT_MS)) {
    process.stderr.write(`ca-a2a sidecar: ${drainTimeout.name} must be a whole number of milliseconds from 0 to ${MAX_DRAIN_TIMEOUT_MS}, got '${drainTimeout.value}'\n`);
    return 2;
  }
  // A flag given wins; else the variable, which must read as on or off.
  const noWatch = values['no-watch'] ?? envSwitch('CA_A2A_NO_WATCH');
  const allowHttpIssuer = values['allow-http-issuer'] ?? envSwitch('CA_A2A_ALLOW_HTTP_ISSUER');
  for (const bad of [noWatch, allowHttpIssuer]) {
    if (typeof bad === 'string') {
      process.stderr.write(`ca-a2a sidecar: ${bad}\n`);
      return 2;
    }
  }
  const port = service !== undefined ? SHIPPED_SERVICES[service].port : 8080;
  const listen = listenOption?.value ?? `127.0.0.1:${port}`;
  const listenPort = Number(listen.slice(listen.lastIndexOf(':') + 1));
  const policyFile = service !== undefined ? shippedPolicyFile(service) : (policy as string);

  const stopping = stopSignal();
  // Listened for before the start too, as the stop signals are: SIGHUP's default action ends the
  // process. One that comes while the sidecar starts reloads once it has started, since the files
  // may have changed after the start read them.
  let sidecar: Sidecar | undefined;
  let reloadOnceStarted = false;
  process.on('SIGHUP', () => {
    if (sidecar === undefined) reloadOnceStarted = true;
    else void sidecar.reload();
  });
  try {
    sidecar = await startSidecar({
      policyFile,
      listen,
      adminListen: adminListen?.value ?? `${listen.slice(0, listen.lastIndexOf(':'))}:${listenPort === 0 ? 0 : adminPortFor(listenPort)}`,
      upstream: upstream?.value,
      issuer: issuer?.value,
      publicUrls: [...publicUrls.value],
      egressListen: egressListen?.value,
      allowHttpIssuer: allowHttpIssuer === true,
      clientSecret: readClientSecret(),
      serviceUrls,
      trustedProxies: [...trustedProxies.value],
      watchPolicy: noWatch !== true,
      shadowPolicyFile: values['shadow-policy'],
      stores: storeOptionsFromEnv(),
      drainTimeoutMs: drainTimeout === undefined ? undefined : Number(drainTimeout.value),
    });
  } catch (error) {
    if (isPolicyLoadError(error)) {
      process.stderr.write(`ca-a2a sidecar: policy refused, nothing started:\n${error.problems.map(formatProblem).join('\n')}\n`);
      return 1;
    }
    process.stderr.write(`ca-a2a sidecar: ${(error as Error).message}\n`);
    return 1;
  }
  if (reloadOnceStarted) void sidecar.reload();
  await stopping;
  await sidecar.close();
  return 0;
}
