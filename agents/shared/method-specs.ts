import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { projectPath } from '../../proxy/paths.js';

/** One JSON-RPC method of an agent as its service policy declares it. */
export interface MethodSpec {
  readonly name: string;
  readonly description: string;
  /** The params JSON Schema, `$ref`s resolved against the policy's directory. */
  readonly params: Readonly<Record<string, unknown>>;
}

const POLICIES_DIR = projectPath('policies/services/');

interface PolicyMethods {
  methods?: Record<string, { description?: string; params?: Record<string, unknown> }>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The methods and params schemas of a shipped service, read from policies/services/NAME.yaml and
 * the policies/schemas/ files it references. The sidecar validates params against the very same
 * files, so the agent card, the agent's own check and the policy cannot drift apart.
 */
export function loadMethodSpecs(service: string, policiesDir = POLICIES_DIR): MethodSpec[] {
  const file = resolve(policiesDir, `${service}.yaml`);
  const policy = parse(readFileSync(file, 'utf8')) as PolicyMethods;
  const specs: MethodSpec[] = [];
  for (const [name, entry] of Object.entries(policy.methods ?? {})) {
    const params = entry.params ?? { type: 'object' };
    specs.push({ name, description: entry.description ?? name, params: resolveSchema(name, params, dirname(file)) });
  }
  return specs;
}

/**
 * A params schema as the sidecar's policy loader reads it (proxy/policy/load.ts compileSchema): a
 * top-level `$ref` to `file.json` or `file.json#/pointer`, relative to the policy file, with any
 * keys written beside it constraining too. A plain `$ref` to a file is the file itself. Otherwise
 * the file is embedded under `$defs` with an `$id` of its own, so that the `$ref` (its fragment
 * included) and the file's own `#` references resolve inside it; the `$id` names the method, so one
 * compiler can hold the same file under several methods, and no local path reaches the card.
 */
function resolveSchema(method: string, schema: Record<string, unknown>, baseDir: string): Record<string, unknown> {
  const ref = schema['$ref'];
  // A '#' reference points into the params schema itself, as it does at the sidecar.
  if (typeof ref !== 'string' || ref.startsWith('#')) return schema;
  const hash = ref.indexOf('#');
  const target = resolve(baseDir, hash < 0 ? ref : ref.slice(0, hash));
  const loaded: unknown = target.endsWith('.json') ? JSON.parse(readFileSync(target, 'utf8')) : parse(readFileSync(target, 'utf8'));
  if (!isRecord(loaded)) throw new Error(`${target} is not a JSON Schema object`);
  // $id and $schema are for editors, as at the sidecar; an $id would clash across methods.
  const { $id: _id, $schema: _schema, ...body } = loaded;
  const { $ref: _ref, ...beside } = schema;
  if (hash < 0 && Object.keys(beside).length === 0) return body;
  const id = `urn:ca-a2a:params:${encodeURIComponent(method)}`;
  const defs = isRecord(beside['$defs']) ? beside['$defs'] : {};
  return { ...beside, $ref: hash < 0 ? id : `${id}${ref.slice(hash)}`, $defs: { ...defs, [REF_DEF]: { ...body, $id: id } } };
}

/** Where a referenced file is embedded in a params schema that adds to it (keys beside the $ref, a fragment). */
const REF_DEF = 'ca_a2a_ref';
