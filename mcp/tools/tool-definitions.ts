import { CLAIM_TOOLS } from './claim-tools.js';
import { DOCUMENT_TOOLS } from './document-tools.js';
import { PROCESSING_LOG_TOOLS } from './processing-log-tools.js';
import { S3_TOOLS } from './s3-tools.js';
import type { ToolDefinition, ToolFamily } from './tool-types.js';

/** Every tool of the gateway with its handler, in the order tools/list publishes them. */
export const ALL_TOOLS: ToolFamily = Object.freeze({ ...S3_TOOLS, ...DOCUMENT_TOOLS, ...CLAIM_TOOLS, ...PROCESSING_LOG_TOOLS });

/**
 * Name, description and input JSON Schema of every tool, as tools/list publishes them; the
 * sidecar policy and the docs reuse these schemas.
 */
export const TOOL_DEFINITIONS: readonly ToolDefinition[] = Object.freeze(Object.values(ALL_TOOLS).map((t) => t.definition));

/** The tool names, for policies that grant per tool. */
export const TOOL_NAMES: readonly string[] = Object.freeze(TOOL_DEFINITIONS.map((d) => d.name));
