/**
 * `ca-a2a <command>`: each command lives in the package that owns it and is loaded on demand,
 * so `ca-a2a token` does not pay for the sidecar's imports.
 */
type Command = (argv: string[]) => Promise<number>;

interface CommandEntry {
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

const COMMANDS: Record<string, CommandEntry> = {
  up: {
    summary: 'run the whole system locally (issuer, gateway, agents, sidecars) and process the samples',
    load: async () => (await import('../proxy/up/cli.js')).upCommand,
  },
  sidecar: {
    summary: 'run the security sidecar in front of one service',
    load: async () => (await import('../proxy/cli.js')).sidecarCommand,
  },
  'mcp-gateway': {
    summary: 'run the MCP resource gateway (the only holder of database and bucket credentials)',
    load: async () => (await import('../mcp/cli.js')).mcpGatewayCommand,
  },
  agent: {
    summary: 'run one pipeline agent (orchestrator, extractor, validator, archivist) behind its sidecar',
    load: async () => (await import('../agents/cli.js')).agentCommand,
  },
  'admin-api': {
    summary: 'run the admin API (token revocation) that the admin sidecar fronts',
    load: async () => (await import('../proxy/admin-api/cli.js')).adminApiCommand,
  },
  revoke: {
    summary: 'revoke tokens by jti, subject or issue time (durable, pushed to every sidecar)',
    load: async () => (await import('../proxy/revoke/cli.js')).revokeCommand,
  },
  issuer: {
    summary: 'run the development OIDC issuer (Keycloak-shaped, realm ca-a2a)',
    load: async () => (await import('../deploy/dev-issuer/cli.js')).issuerCommand,
  },
  call: {
    summary: 'make one signed JSON-RPC call to a service (token, DPoP proof, Content-Digest)',
    load: async () => (await import('../proxy/client/cli.js')).callCommand,
  },
  token: {
    summary: 'print an access token for a client of the development issuer',
    load: async () => (await import('../deploy/dev-issuer/cli.js')).tokenCommand,
  },
  policy: {
    summary: 'check, explain, matrix, diff, test and document RBAC policy files',
    load: async () => (await import('../proxy/policy/cli.js')).policyCommand,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return ['usage: ca-a2a <command> [options]', '', 'commands:', ...lines, '', 'ca-a2a <command> --help for its options.'].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a usage error: the usage goes with the other diagnostics, stdout stays empty.
    process.stderr.write(`ca-a2a: give a command\n\n${usage()}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  // Own names only: 'toString' or '__proto__' would find Object.prototype's, and crash.
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    process.stderr.write(`ca-a2a: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  const command = await entry.load();
  return command(rest);
}

/**
 * Under npm (`npx ca-a2a …`), npm runs the command through a shell that does not pass signals on,
 * and even `npm start` (which execs) sometimes sees npm end at once on SIGTERM: either way npm is
 * gone and this process would be left serving, orphaned. Once the
 * process that started this one is gone, take it as that SIGTERM (every serving command stops on
 * it). Outside npm a changed parent means nothing (nohup, a daemon), so this applies under npm only.
 */
function stopWhenOrphanedUnderNpm(): void {
  if (process.env.npm_command === undefined) return;
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.kill(process.pid, 'SIGTERM');
  }, 500).unref();
}

/**
 * A reader that stops early (`ca-a2a policy test --verbose | head`) closes the pipe: what is left
 * to print has nowhere to go, which is no failure of the command (git and coreutils end quietly
 * on it too). Without a listener Node throws the EPIPE with its stack trace.
 */
function ignoreClosedStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

stopWhenOrphanedUnderNpm();
ignoreClosedStdout();
process.exitCode = await main(process.argv.slice(2));
