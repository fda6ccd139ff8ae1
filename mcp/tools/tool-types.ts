import type { SqlClient } from '../../proxy/stores/sql/sql-client.js';
import type { ObjectStore } from '../backends/object-store.js';
import type { KeyPolicy } from '../object-keys.js';
import type { ResilientBackend } from '../resilience.js';
import type { ToolHints } from './tool-hints.js';

/** A JSON Schema object as published in tools/list and compiled by ajv. */
export type JsonSchema = Readonly<Record<string, unknown>>;

/** What tools/list publishes for one tool; the sidecar policy and the docs reuse these. */
export interface ToolDefinition {
  readonly name: string;
  readonly description: string;
  readonly inputSchema: JsonSchema;
  readonly annotations: ToolHints;
}

/** What a tool runs against, built once by the gateway. */
export interface ToolDeps {
  readonly sql: SqlClient;
  readonly db: ResilientBackend;
  readonly store: ObjectStore;
  readonly s3: ResilientBackend;
  readonly keys: KeyPolicy;
  readonly maxObjectBytes: number;
  /** The timeout of each try of an upload (s3_put_object), in place of the backend's. */
  readonly uploadTimeoutMs: number;
}

/**
 * Runs one tool on arguments that already passed its schema (so handlers may narrow them with a
 * cast to their argument interface); resolves to the result object or throws a ToolError.
 */
export type ToolHandler = (args: Record<string, unknown>, deps: ToolDeps) => Promise<object>;

/** A tool family's definitions paired with their handlers. */
export type ToolFamily = Readonly<Record<string, { definition: ToolDefinition; handler: ToolHandler }>>;
