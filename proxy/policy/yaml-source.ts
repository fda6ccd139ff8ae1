import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node } from 'yaml';
import type { PolicyProblem } from './errors.js';
import type { SourceLocation } from './model.js';

/** A parsed YAML (or JSON) file that can say where any path inside it is. */
export interface YamlSource {
  readonly file: string;
  readonly text: string;
  readonly data: unknown;
  /** Syntax errors and duplicate keys, each with a position. */
  readonly problems: readonly PolicyProblem[];
  locate(path: readonly (string | number)[], key?: string): SourceLocation;
}

/** A file's text, or why it cannot be read: a bad path in a policy is a policy error, never a crash. */
export function readPolicyText(file: string): { readonly text: string } | { readonly error: string } {
  try {
    return { text: readFileSync(file, 'utf8') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { error: code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? (error as Error).message}` };
  }
}

export function readYamlSource(file: string, given?: string): YamlSource {
  let text = given;
  if (text === undefined) {
    const read = readPolicyText(file);
    if ('error' in read) {
      const start = { file, line: 1, column: 1 };
      return { file, text: '', data: undefined, problems: [{ ...start, path: '', message: read.error }], locate: () => start };
    }
    text = read.text;
  }
  const lineCounter = new LineCounter();
  // uniqueKeys (the default) turns a duplicate key into an error: YAML's last-wins would
  // silently drop an earlier grant or deny.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: false });
  const position = (offset: number): SourceLocation => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  const problems: PolicyProblem[] = [...doc.errors, ...doc.warnings].map((error) => ({
    ...position(error.pos[0]),
    path: '',
    message: error.message.split('\n')[0] ?? error.message,
  }));
  // A %YAML 1.1 directive would bring back 1.1's merge keys (`<<`) whatever `merge: false` says:
  // a grant merged in from elsewhere, invisible where the role is read.
  const directive = doc.directives?.yaml;
  if (directive?.explicit && directive.version !== '1.2') {
    problems.push({ ...position(0), path: '', message: `YAML ${directive.version} documents are not accepted (merge keys): remove the %YAML directive` });
  }
  let data: unknown;
  if (problems.length === 0) {
    try {
      data = doc.toJS({ maxAliasCount: 50 });
    } catch (error) {
      // An alias expansion bomb (maxAliasCount) or another refusal of the YAML library.
      problems.push({ ...position(doc.contents?.range?.[0] ?? 0), path: '', message: (error as Error).message.split('\n')[0] ?? 'unreadable YAML' });
    }
  }
  return {
    file,
    text,
    data,
    problems,
    locate: (path, key) => position(nodeOffset(doc, path, key)),
  };
}

function nodeOffset(doc: Document, path: readonly (string | number)[], key: string | undefined): number {
  let best = doc.contents?.range?.[0] ?? 0;
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true) as Node | undefined;
    if (node?.range) {
      best = node.range[0];
      if (depth === path.length && key !== undefined && isMap(node)) {
        const pair = node.items.find((item) => isScalar(item.key) && item.key.value === key);
        if (pair && isScalar(pair.key) && pair.key.range) best = pair.key.range[0];
      }
      break;
    }
  }
  return best;
}
