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
    specs.push({ name, description: entry.description ?? name, params: resolveSchema(params, dirname(file)) });
  }
  return specs;
}

function resolveSchema(schema: Record<string, unknown>, baseDir: string): Record<string, unknown> {
  const ref = schema['$ref'];
  if (typeof ref !== 'string') return schema;
  const target = resolve(baseDir, ref);
  const loaded: unknown = target.endsWith('.json') ? JSON.parse(readFileSync(target, 'utf8')) : parse(readFileSync(target, 'utf8'));
  if (!isRecord(loaded)) throw new Error(`${target} is not a JSON Schema object`);
  // The $id names the file; it is dropped so one compiler can hold the schema under several methods.
  const { $id: _id, ...rest } = loaded;
  return rest;
}
