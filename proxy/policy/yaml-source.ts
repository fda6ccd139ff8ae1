import { closeSync, openSync, readSync } from 'node:fs';
import { Lexer, LineCounter, Parser, isMap, isScalar, isSeq, parseDocument, visit, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
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

/**
 * The largest policy, rbac or schema file read: each is read and parsed in the sidecar's own
 * thread, at start and at every reload, so a file of hundreds of MB (a wrong path, a generated
 * file gone wrong) would stall every request. The shipped files are a few KB.
 */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

/**
 * The deepest a policy, rbac or schema file may nest (the shipped ones: 10). yaml composes a
 * document recursively, a few calls per level, and so does ajv compiling a schema: some hundreds of
 * levels overflow the stack, and V8 then aborts the whole process, no exception to catch, when it
 * compiles a regular expression that deep ("FATAL ERROR: RegExpCompiler Allocation failed", Node
 * 20, a 20 KB file of nested "- " loaded a few times). So depth is measured before composing.
 */
export const MAX_POLICY_NESTING = 64;

/** Why a file cannot be read; `at`, when the problem is at a place inside it (a byte that is not UTF-8). */
export interface UnreadableText {
  readonly error: string;
  readonly at?: { readonly line: number; readonly column: number };
}

/** A file's text, or why it cannot be read: a bad path in a policy is a policy error, never a crash. */
export function readPolicyText(file: string): { readonly text: string } | UnreadableText {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    // Read to one byte past the limit rather than trusting a size from stat: a FIFO, a device
    // (/dev/zero) or a file still growing has no size that holds.
    const buffer = Buffer.allocUnsafe(MAX_POLICY_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    if (length > MAX_POLICY_FILE_BYTES) return { error: `file too large: ${file} is over ${MAX_POLICY_FILE_BYTES / 1024 / 1024} MiB, the limit of a policy, rbac or schema file` };
    return decodeUtf8(file, buffer.subarray(0, length));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { error: code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? (error as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * YAML and JSON files are UTF-8 here. Decoded leniently, a Latin-1 'é' became U+FFFD without a
 * word (in a description, or refused by a name's pattern as some other character), and a UTF-16
 * file (Windows editors) was read as noise: 'must be object'. Refused where the first bad byte is.
 */
function decodeUtf8(file: string, bytes: Buffer): { readonly text: string } | UnreadableText {
  const text = bytes.toString('utf8');
  // Each invalid sequence decodes to U+FFFD; one written in the file is the bytes EF BF BD.
  for (let index = text.indexOf('\uFFFD'); index >= 0; index = text.indexOf('\uFFFD', index + 1)) {
    const offset = Buffer.byteLength(text.slice(0, index));
    if (bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd) continue;
    const lines = text.slice(0, index).split('\n');
    const at = { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
    const bom = bytes.subarray(0, 2).toString('hex');
    if (offset === 0 && (bom === 'fffe' || bom === 'feff')) return { error: `${file} is UTF-16 (it starts with a byte order mark): save it as UTF-8`, at };
    return { error: `${file} is not UTF-8 (byte 0x${bytes.subarray(offset, offset + 1).toString('hex')}): save it as UTF-8`, at };
  }
  return { text };
}

export function readYamlSource(file: string, given?: string): YamlSource {
  let text = given;
  if (text === undefined) {
    const read = readPolicyText(file);
    if ('error' in read) return unreadable(file, '', { file, line: read.at?.line ?? 1, column: read.at?.column ?? 1 }, read.error);
    text = read.text;
  }
  const deepAt = nestingLimitExceededAt(text);
  if (deepAt !== undefined) {
    return unreadable(file, text, { file, ...deepAt }, `nested more than ${MAX_POLICY_NESTING} levels deep, the limit of a policy, rbac or schema file`);
  }
  const lineCounter = new LineCounter();
  // Duplicate keys are found by duplicateKeys() below, not by yaml's uniqueKeys: it compares each
  // key with every earlier one of its map, some minutes of a stalled sidecar for a 1 MiB map.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, merge: false });
  const position = (offset: number): SourceLocation => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  const problems: PolicyProblem[] = [...doc.errors, ...doc.warnings].map((error) => ({
    ...position(error.pos[0]),
    path: '',
    message: error.message.split('\n')[0] ?? error.message,
  }));
  problems.push(...duplicateKeys(doc).map(({ offset, message }) => ({ ...position(offset), path: '', message })));
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
  const index: PairIndex = new WeakMap();
  return {
    file,
    text,
    data,
    problems,
    locate: (path, key) => position(nodeOffset(doc, index, path, key)),
  };
}

/**
 * Keys given twice in a map, as the parsed data would have them: YAML's last-wins would silently
 * drop an earlier grant or deny, and so would `1` after `"1"` (one key "1" in the data, two to
 * yaml's uniqueKeys). A key that is a collection or an alias names nothing a policy has. Linear.
 */
function duplicateKeys(doc: Document): { readonly offset: number; readonly message: string }[] {
  const found: { offset: number; message: string }[] = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const { key } of map.items) {
        if (key !== null && !isScalar(key)) {
          found.push({ offset: (key as Node).range?.[0] ?? 0, message: 'a map key must be a name, not a collection or an alias' });
          continue;
        }
        const name = keyName(key?.value);
        if (seen.has(name)) found.push({ offset: key?.range?.[0] ?? 0, message: `Map keys must be unique: '${name}' is given twice` });
        seen.add(name);
      }
    },
  });
  return found;
}

/** A file refused before it is parsed: one problem, and every path located where it is. */
function unreadable(file: string, text: string, at: SourceLocation, message: string): YamlSource {
  return { file, text, data: undefined, problems: [{ ...at, path: '', message }], locate: () => at };
}

/**
 * Where the text first nests deeper than MAX_POLICY_NESTING, if it does. yaml's CST parser keeps
 * its open collections in an explicit stack rather than recursing, so it measures any depth safely;
 * fed one lexeme at a time, it stops at the limit instead of reading a deep file to its end.
 */
function nestingLimitExceededAt(text: string): { readonly line: number; readonly column: number } | undefined {
  const lines = new LineCounter();
  lines.addNewLine(0); // as Parser.parse() does before its first lexeme
  const parser = new Parser(lines.addNewLine);
  for (const lexeme of new Lexer().lex(text)) {
    // What comes out are finished documents, composed again by parseDocument: only the depth matters here.
    Array.from(parser.next(lexeme));
    if (parser.stack.length > MAX_POLICY_NESTING) {
      const { line, col } = lines.linePos(parser.offset);
      return { line, column: col };
    }
  }
  return undefined;
}

/** Each map's pairs by the key the data names them with, made once per map: see nodeOffset. */
type PairIndex = WeakMap<YAMLMap, ReadonlyMap<string, Pair>>;

/**
 * Where the deepest node on the path starts (the key's own place, when `key` names one in the map
 * the path reaches). Each map is looked up through its index: yaml's getIn walks a map's pairs,
 * so locating every role of 20,000 (a generated rbac file) took 6 s of the sidecar's thread.
 */
function nodeOffset(doc: Document, index: PairIndex, path: readonly (string | number)[], key: string | undefined): number {
  let node: unknown = doc.contents;
  let best = doc.contents?.range?.[0] ?? 0;
  for (const segment of path) {
    node = isMap(node) ? pairsOf(index, node).get(String(segment))?.value : isSeq(node) ? node.items[Number(segment)] : undefined;
    const range = (node as Node | null | undefined)?.range;
    if (!range) return best;
    best = range[0];
  }
  const pair = key !== undefined && isMap(node) ? pairsOf(index, node).get(key) : undefined;
  return (pair?.key as Node | null | undefined)?.range?.[0] ?? best;
}

function pairsOf(index: PairIndex, map: YAMLMap): ReadonlyMap<string, Pair> {
  let pairs = index.get(map);
  if (!pairs) {
    const made = new Map<string, Pair>();
    for (const pair of map.items) {
      const name = isScalar(pair.key) ? keyName(pair.key.value) : undefined;
      if (name !== undefined && !made.has(name)) made.set(name, pair);
    }
    index.set(map, made);
    pairs = made;
  }
  return pairs;
}

/** A key as the parsed data holds it: a property name. */
function keyName(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}
