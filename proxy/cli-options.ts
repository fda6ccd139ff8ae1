import { parseListen } from './listen.js';
import { redactUrlUser } from './http/redact-url.js';

/**
 * A command option that an environment variable can set too. A bad value is reported under the
 * name of where it came from, the flag when it was given, else the variable: an operator looking
 * for `--listen` in a task definition that only sets CA_A2A_LISTEN would not find it.
 */
export interface FlagOrEnv<T> {
  readonly value: T;
  /** `--listen` when the flag was given, else `CA_A2A_LISTEN`. */
  readonly name: string;
}

/** The flag's value, else the variable's; undefined when neither (an exported-but-empty variable means unset). */
export function flagOrEnv(flag: string, given: string | undefined, variable: string, env: NodeJS.ProcessEnv = process.env): FlagOrEnv<string> | undefined {
  if (given !== undefined) return { value: given, name: flag };
  const value = env[variable];
  return value === undefined || value === '' ? undefined : { value, name: variable };
}

/** A repeatable flag's values, else the comma-separated entries of the variable (none when neither). */
export function flagsOrEnvList(flag: string, given: readonly string[] | undefined, variable: string, env: NodeJS.ProcessEnv = process.env): FlagOrEnv<readonly string[]> {
  if (given !== undefined) return { value: given, name: flag };
  return { value: (env[variable] ?? '').split(',').map((entry) => entry.trim()).filter(Boolean), name: variable };
}

const ON = new Set(['1', 'true', 'yes', 'on']);
const OFF = new Set(['0', 'false', 'no', 'off']);

/**
 * A switch an environment variable turns on (1, true, yes, on) or off (0, false, no, off, empty or
 * unset), any case. Anything else is an error naming the variable: `CA_A2A_NO_WATCH=ture` must not
 * quietly leave the switch off.
 */
export function envSwitch(variable: string, env: NodeJS.ProcessEnv = process.env): boolean | string {
  const value = (env[variable] ?? '').trim().toLowerCase();
  if (value === '' || OFF.has(value)) return false;
  if (ON.has(value)) return true;
  return `${variable} must be 1, true, yes or on (or 0, false, no, off), got '${env[variable] ?? ''}'`;
}

/** True for an absolute http:// or https:// URL. */
export function isHttpUrl(value: string): boolean {
  return URL.canParse(value) && ['http:', 'https:'].includes(new URL(value).protocol);
}

/** The first value of these options that is not an http(s) URL, as a message naming its option (a user and password in it shown as ***). */
export function badHttpUrl(options: readonly (FlagOrEnv<string | readonly string[]> | undefined)[]): string | undefined {
  for (const option of options) {
    if (option === undefined) continue;
    const bad = (typeof option.value === 'string' ? [option.value] : option.value).find((url) => !isHttpUrl(url));
    if (bad !== undefined) return `${option.name} must be an http(s) URL, got '${redactUrlUser(bad)}'`;
  }
  return undefined;
}

/**
 * The first value of these options that is not a base URL, as a message naming its option: an
 * http(s) URL without a user, query or fragment. A path is appended to such a URL (an egress
 * listener's `/SERVICE/message`, a sidecar's `/message`, an issuer's well-known document), which a
 * query or fragment would break, and credentials in it would end up in logs and agent cards. The
 * user and password are never repeated in the message.
 */
export function badBaseUrl(options: readonly (FlagOrEnv<string | readonly string[]> | undefined)[]): string | undefined {
  const notUrl = badHttpUrl(options);
  if (notUrl !== undefined) return notUrl;
  for (const option of options) {
    if (option === undefined) continue;
    const bad = (typeof option.value === 'string' ? [option.value] : option.value).find((url) => /[?#@]/.test(url));
    if (bad !== undefined) return `${option.name} is an origin with an optional path, without a query, fragment or user, got '${redactUrlUser(bad)}'`;
  }
  return undefined;
}


/** The first of these listen options that is not HOST:PORT with a port up to 65535, as a message naming it. */
export function badListen(options: readonly (FlagOrEnv<string> | undefined)[]): string | undefined {
  for (const option of options) {
    if (option === undefined) continue;
    try {
      parseListen(option.value, option.name);
    } catch (error) {
      return (error as Error).message;
    }
  }
  return undefined;
}
