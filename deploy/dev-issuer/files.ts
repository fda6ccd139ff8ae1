import { randomUUID } from 'node:crypto';
import { chmod, link, lstat, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

const PRIVATE_DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates the data directory, 0700. A directory that already exists keeps its mode: it may be
 * shared (`--data-dir .`, the project; `/tmp`, where root would have locked every other user out),
 * and the files written in it are 0600 whatever the directory allows.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // mkdir's mode goes through the umask; set it exactly on the directory made here.
  if (created !== undefined) await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Reads a JSON file, or returns undefined when it does not exist. A symbolic link to nothing is an
 * error, not "missing": a new file cannot be created in its place (the name is taken), so treating
 * it as missing would have the caller generate and retry forever.
 */
export async function readJsonIfExists(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    if (await nameTaken(file)) throw new Error(`${file} is a symbolic link to a file that does not exist; remove the link or restore its target`);
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${file} is not valid JSON; delete it to have it generated again`);
  }
}

/**
 * Writes `value` as JSON (mode 0600) only if `file` does not exist yet; returns false when another
 * process got there first. The content goes to a temporary file first and is then hard-linked into
 * place, so a concurrent reader never sees a half-written file and two issuers starting at once
 * cannot overwrite each other's secrets.
 */
export async function createJsonExclusive(file: string, value: unknown): Promise<boolean> {
  const tmp = temporaryName(file);
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: PRIVATE_FILE_MODE, flag: 'wx' });
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false;
    throw err;
  } finally {
    await unlink(tmp);
  }
}

/** Atomically replaces `file` with `value` as JSON (mode 0600). */
export async function replaceJson(file: string, value: unknown): Promise<void> {
  const tmp = temporaryName(file);
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: PRIVATE_FILE_MODE, flag: 'wx' });
  await rename(tmp, file);
}

/** Resets a secret file's mode to 0600 in case someone loosened it. */
export async function tightenFileMode(file: string): Promise<void> {
  await chmod(file, PRIVATE_FILE_MODE);
}

/** Node's system errors carry a string `code`; match on it rather than on the message. */
export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

async function nameTaken(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

function temporaryName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
}
