/**
 * The command lines the docs show hold to the CLI: every `ca-a2a COMMAND [SUBCOMMAND] … --flag` of
 * README.md and docs/*.md (fenced code and inline code) names a command that exists and flags its
 * --help lists; every CA_A2A_* variable the docs name is one the sources read. A renamed flag or
 * variable otherwise leaves the docs wrong with nothing to say so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirSync } from '../helpers/temp-dir.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin/ca-a2a.js');

/** A piece of code of a markdown file: a fenced line (with its `\` continuations) or an inline code span. */
interface Snippet {
  readonly line: number;
  readonly text: string;
}

/** The fenced code lines, continuations joined (newlines kept), and the inline code spans, each with the line it starts on. */
function codeSnippets(markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const prose: string[] = [];
  let fence: string | undefined;
  let continued: Snippet | undefined;
  markdown.split('\n').forEach((line, index) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker !== undefined && (fence === undefined || marker.startsWith(fence))) {
      fence = fence === undefined ? marker : undefined;
      prose.push('');
      return;
    }
    if (fence === undefined) {
      prose.push(line);
      return;
    }
    prose.push('');
    const snippet = continued === undefined ? { line: index + 1, text: line } : { line: continued.line, text: `${continued.text}\n${line}` };
    continued = line.endsWith('\\') ? snippet : undefined;
    if (continued === undefined) snippets.push(snippet);
  });
  const text = prose.join('\n');
  for (const span of text.matchAll(/(`+)([\s\S]+?)\1/g)) {
    snippets.push({ line: lineAt(text, span.index + span[1]!.length), text: span[2]! });
  }
  return snippets;
}

function lineAt(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

/** One `ca-a2a …` the docs show: the command, the plain word after it (a subcommand, or an argument), and its flags. */
interface Invocation {
  readonly line: number;
  readonly command: string;
  readonly next: string | undefined;
  readonly flags: readonly { readonly flag: string; readonly line: number }[];
}

/**
 * `ca-a2a` where a shell would run it: `npx ca-a2a` and `node bin/ca-a2a.js` anywhere; a bare
 * `ca-a2a` at the start of a command (of the snippet, of a line after a `$ ` prompt, after `$(`,
 * `&&`, `||`, ` | ` or `;`), after any VAR=value prefixes. The command is a lower-case word
 * followed by a blank (not `ca-a2a revoke:`, a message the command prints).
 */
const INVOCATION = /(?:\bnpx\s+ca-a2a|\bnode\s+bin\/ca-a2a\.js|(?:^|^\$\s|\$\(|&&|\|\||\s\|\s|;)\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*ca-a2a)\s+([a-z][a-z-]*)(?=\s|$)/gm;

/**
 * Words that follow a bare `ca-a2a` in code and are no command: the AWS stack's security groups,
 * named `ca-a2a <component>` (docs/deploy.md, "Security groups").
 */
const NOT_COMMANDS = new Set(['keycloak', 'orchestrator', 'admin', 'redis', 'scraper']);

/** A flag: `--` and a lower-case name, not inside a word (`x--y`) or another flag. */
const FLAG = /(?<![\w-])--[a-z][a-z0-9-]*/g;

/** Every `ca-a2a` command line of a markdown text. */
function invocations(markdown: string): Invocation[] {
  const found: Invocation[] = [];
  for (const snippet of codeSnippets(markdown)) {
    for (const match of snippet.text.matchAll(INVOCATION)) {
      const command = match[1]!;
      if (NOT_COMMANDS.has(command) && snippet.text.trim() === `ca-a2a ${command}`) continue;
      const start = match.index + match[0].length;
      const rest = commandRest(snippet.text.slice(start));
      const at = (offset: number): number => snippet.line + lineAt(snippet.text, offset) - 1;
      found.push({
        line: at(start - command.length),
        command,
        next: /^\s+([a-z][a-z-]*)(?=\s|$)/.exec(rest)?.[1],
        flags: [...rest.matchAll(FLAG)].map((flag) => ({ flag: flag[0], line: at(start + flag.index) })),
      });
    }
  }
  return found;
}

/**
 * The exec forms of the docs (a container's `"command": ["sidecar", "--policy", …]`, the `REVOKE`
 * override `'["revoke","jti",…]'`) whose first string is one of `commands`: a list of strings
 * starting with a lower-case word, up to its `]`. Others (`["CMD", "node", …]`, `["validated", …]`)
 * are no command lines.
 */
function execForms(markdown: string, commands: ReadonlySet<string>): Invocation[] {
  const found: Invocation[] = [];
  for (const form of markdown.matchAll(/\[\s*"([a-z][a-z-]*)"\s*,([^\]]*)\]/g)) {
    const command = form[1]!;
    if (!commands.has(command)) continue;
    const at = (offset: number): number => lineAt(markdown, form.index + offset);
    const rest = form[2]!;
    const flags = [...rest.matchAll(/"(--[a-z][a-z0-9-]*)"/g)].map((flag) => ({ flag: flag[1]!, line: at(form[0].length - rest.length - 1 + flag.index) }));
    found.push({ line: at(0), command, next: /^\s*"([a-z][a-z-]*)"/.exec(rest)?.[1], flags });
  }
  return found;
}

/**
 * The arguments of one command, offsets kept: quoted strings blanked (their content is a value,
 * never a flag of ours), a synopsis' groups `( … | … )` opened, then cut where the shell command
 * ends: a comment, a pipe into another command (` | ` before a word; ` | --flag` is a synopsis'
 * alternative), `||`, `&&`, `;` or the `)` of a `$( … )`.
 */
function commandRest(text: string): string {
  const blank = (part: string): string => part.replace(/[^\n]/g, ' ');
  const opened = text
    .replace(/'[^'\n]*'|"[^"\n]*"/g, blank)
    .replace(/\(([^()]*)\)/g, ' $1 ');
  const end = opened.search(/\s#|\s\|\s+(?![\s-])|\|\||&&|;|\)/);
  return end === -1 ? opened : opened.slice(0, end);
}

const helps = new Map<string, string>();

/** `ca-a2a ARGS --help`, run once per ARGS. */
function helpOf(args: readonly string[]): string {
  const key = args.join(' ');
  let help = helps.get(key);
  if (help === undefined) {
    help = execFileSync(process.execPath, [BIN, ...args, '--help'], { encoding: 'utf8' });
    helps.set(key, help);
  }
  return help;
}

/** The subcommands a help lists: under `commands:` (ca-a2a's, ca-a2a policy's) or as usage forms (`ca-a2a revoke jti …`). */
function subcommandsOf(args: readonly string[]): Set<string> {
  const help = helpOf(args);
  const section = help.split('\ncommands:\n')[1]?.split('\n\n')[0] ?? '';
  const usage = help.split('\n\n')[0]!;
  const form = new RegExp(`${['ca-a2a', ...args].join(' ')} ([a-z][a-z-]*)(?=\\s|$)`, 'gm');
  return new Set([...section.matchAll(/^\s+([a-z][a-z-]*)\s/gm), ...usage.matchAll(form)].map((match) => match[1]!));
}

/** The flags a help lists: those of its usage (up to the first blank line) and those that start an option line. --help itself answers everywhere. */
function flagsIn(help: string): Set<string> {
  const usage = help.split('\n\n')[0]!;
  const options = help.split('\n').filter((line) => /^\s*--[a-z]/.test(line));
  return new Set(['--help', ...[usage, ...options].flatMap((text) => [...text.matchAll(FLAG)].map((match) => match[0]))]);
}

/** Each command or flag of the docs' command lines that the CLI does not have, as FILE:LINE: what. */
function cliDrift(files: readonly string[], root: string): string[] {
  const commands = subcommandsOf([]);
  const drift: string[] = [];
  for (const file of files) {
    const markdown = readFileSync(file, 'utf8');
    for (const shown of [...invocations(markdown), ...execForms(markdown, commands)].sort((a, b) => a.line - b.line)) {
      const where = relative(root, file);
      if (!commands.has(shown.command)) {
        drift.push(`${where}:${shown.line}: ca-a2a ${shown.command} (no such command)`);
        continue;
      }
      let args = [shown.command];
      const subcommands = subcommandsOf(args);
      if (subcommands.size > 0 && shown.next !== undefined) {
        if (!subcommands.has(shown.next)) {
          drift.push(`${where}:${shown.line}: ca-a2a ${shown.command} ${shown.next} (no such command)`);
          continue;
        }
        args = [shown.command, shown.next];
      }
      const known = flagsIn(helpOf(args));
      for (const { flag, line } of shown.flags) {
        if (!known.has(flag)) drift.push(`${where}:${line}: ${flag} (not in ca-a2a ${args.join(' ')} --help)`);
      }
    }
  }
  return drift;
}

const VARIABLE = /(?<![A-Za-z0-9_])CA_A2A_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_])/g;

/**
 * A variable as code reads it: `env.NAME`, or the whole of a string (`env['NAME']`,
 * `flagOrEnv('--flag', value, 'NAME')`, `envSwitch("NAME")`, the Keycloak realm's `"${NAME}"`);
 * not a mention inside a longer text such as a help line.
 */
const READ = /\benv\.(CA_A2A_[A-Z0-9_]+)\b|(?:['"`]|\$\{)(CA_A2A_[A-Z0-9_]+)(?:['"`]|\})/g;

/** Where the variables are read: the sources of the commands and of the deployments (the Keycloak realm reads the client secrets' variables). */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return /\.(ts|js|json)$/.test(name) && !name.endsWith('.test.ts') ? [path] : [];
  });
}

/** Each CA_A2A_* variable a doc names that no source under `sourceDirs` reads, as FILE:LINE: NAME. */
function variableDrift(files: readonly string[], root: string, sourceDirs: readonly string[]): string[] {
  const read = new Set(sourceDirs.flatMap(sourceFiles).flatMap((path) => [...readFileSync(path, 'utf8').matchAll(READ)].map((match) => (match[1] ?? match[2])!)));
  return files.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, index) => (line.match(VARIABLE) ?? []).filter((name) => !read.has(name)).map((name) => `${relative(root, file)}:${index + 1}: ${name}`)),
  );
}

function operatorDocs(): string[] {
  const docs = join(ROOT, 'docs');
  return [join(ROOT, 'README.md'), ...readdirSync(docs).filter((name) => name.endsWith('.md')).map((name) => join(docs, name))];
}

const SOURCES = ['proxy', 'agents', 'mcp', 'bin', 'deploy'].map((dir) => join(ROOT, dir));

describe('the command lines of the docs', () => {
  it('name commands that exist and flags their --help lists (README.md, docs/*.md)', () => {
    assert.deepEqual(cliDrift(operatorDocs(), ROOT), []);
  });

  it('name CA_A2A_* variables that the sources read', () => {
    assert.deepEqual(variableDrift(operatorDocs(), ROOT, SOURCES), []);
  });

  it('reports an unknown flag, command or subcommand at its line, through continuations, pipes, env prefixes and synopses', () => {
    const dir = tempDirSync('doc-flags');
    writeFileSync(join(dir, 'page.md'), [
      '# Page', // 1
      '```sh',
      '$ npx ca-a2a call --client viewer --service archivist \\', // 3
      '    --method list_documents --param x', // 4: --param
      'FOO=bar CA_A2A_X=1 npx ca-a2a token --client viewer --raw | jq --raw-output .', // 5: --raw, not jq's
      'TOKEN=$(npx ca-a2a token --client viewer) && curl --oauth2-bearer "$TOKEN"', // 6
      'node bin/ca-a2a.js revoke jti J --reason "a --quoted text" --expires # --comment', // 7: --expires
      'ca-a2a revoke: DATABASE_URL not set', // 8: a message, no command
      'npx ca-a2a gateway --listen 1', // 9: no such command
      '```',
      'Run `ca-a2a policy explain ([DIR|FILE…] --service NAME | --policy FILE) --roles a,b --method M --tool T`,', // 11
      '`ca-a2a policy check --stict`, `ca-a2a policy chekc`, `ca-a2a policy <command>`', // 12: --stict, chekc
      'and `ca-a2a sidecar --public-url', // 13
      'https://x --public-uri https://y`; the group `ca-a2a keycloak`, `REDIS_URL for the ca-a2a sidecars`.', // 14: --public-uri
      '   ```',
      '   ca-a2a mcp-gateway --db-per-caller 2 --s3-upload-timeout 9', // 16: --s3-upload-timeout
      '   ```',
      '```json',
      '"command": ["sidecar", "--policy", "/policies/policy.yaml",', // 19
      '            "--listn", "0.0.0.0:8010"], "healthCheck": { "command": ["CMD", "node", "-e", "x"] }', // 20: --listn
      '```',
      'REVOKE=\'["revoke","jti","<jti>","--reason","stolen","--byy","\'"$USER"\'"]\' and ["validated", "--nope"]', // 22: --byy
      '`["policy", "explain", "--role", "a"]`', // 23: --role
      '`ca-a2a revoke jtii J`, `ca-a2a revoke migrate --by x`, `ca-a2a revoke …`', // 24: jtii
    ].join('\n'));
    assert.deepEqual(cliDrift([join(dir, 'page.md')], dir), [
      'page.md:4: --param (not in ca-a2a call --help)',
      'page.md:5: --raw (not in ca-a2a token --help)',
      'page.md:7: --expires (not in ca-a2a revoke jti --help)',
      'page.md:9: ca-a2a gateway (no such command)',
      'page.md:12: --stict (not in ca-a2a policy check --help)',
      'page.md:12: ca-a2a policy chekc (no such command)',
      'page.md:14: --public-uri (not in ca-a2a sidecar --help)',
      'page.md:16: --s3-upload-timeout (not in ca-a2a mcp-gateway --help)',
      'page.md:20: --listn (not in ca-a2a sidecar --help)',
      'page.md:22: --byy (not in ca-a2a revoke jti --help)',
      'page.md:23: --role (not in ca-a2a policy explain --help)',
      'page.md:24: ca-a2a revoke jtii (no such command)',
    ]);
  });

  it('reports a variable no source reads (a help line that names it is no read), and not a header that contains one', () => {
    const dir = tempDirSync('doc-variables');
    writeFileSync(join(dir, 'code.ts'), [
      'const listen = process.env.CA_A2A_LISTEN;',
      "const port = flagOrEnv('--port', values.port, 'CA_A2A_PORT');",
      'const secret = "${CA_A2A_CLIENT_SECRET_VIEWER}";',
      "const help = '  --old N  (CA_A2A_OLD; default 1)';",
    ].join('\n'));
    writeFileSync(join(dir, 'page.md'), [
      'CA_A2A_LISTEN, `CA_A2A_PORT`, CA_A2A_CLIENT_SECRET_VIEWER, X_CA_A2A_Subject, CA_A2A_*',
      '',
      'CA_A2A_LISTEN_ADDR=1 and CA_A2A_OLD',
    ].join('\n'));
    assert.deepEqual(variableDrift([join(dir, 'page.md')], dir, [dir]), ['page.md:3: CA_A2A_LISTEN_ADDR', 'page.md:3: CA_A2A_OLD']);
  });
});
