import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDirSync } from '../helpers/temp-dir.js';

/** A small, clean policy directory every lint test starts from (policy check finds nothing in it). */
export const CLEAN_RBAC = `roles:
  admin:
    allow: ["*"]
    tools:
      allow: ["*"]
  viewer:
    allow: [get_document, list_documents]
  tooler:
    tools:
      allow: [s3_get_object]
      arguments:
        s3_get_object:
          type: object
          properties:
            key: { type: string, pattern: "^uploads/" }
`;

export const CLEAN_SERVICE = `service: docs
rbac: ../rbac.yaml
upstream: http://127.0.0.1:9000
auth: { issuer: "http://127.0.0.1:8080/realms/x", audience: ca-a2a-agents }
public_routes: [GET /health]
rate_limit:
  per_role:
    viewer: { points: 10 }
methods:
  get_document: { params: { type: object } }
  list_documents: { params: { type: object } }
`;

export const CLEAN_MCP = `service: mcp
rbac: ../rbac.yaml
upstream: http://127.0.0.1:9000
auth: { issuer: "http://127.0.0.1:8080/realms/x", audience: ca-a2a-agents }
endpoints: [{ path: /mcp }]
methods:
  tools/list: { access: tool_holders }
  tools/call: { access: per_tool, params: { type: object } }
tools:
  s3_get_object: {}
`;

/** Writes a policy directory (rbac.yaml, services/docs.yaml, services/mcp.yaml) with optional replacements. */
export function policyDir(files: { rbac?: string | Buffer; service?: string; mcp?: string; extra?: Record<string, string> } = {}): string {
  const dir = tempDirSync('lint');
  mkdirSync(join(dir, 'services'));
  writeFileSync(join(dir, 'rbac.yaml'), files.rbac ?? CLEAN_RBAC);
  writeFileSync(join(dir, 'services', 'docs.yaml'), files.service ?? CLEAN_SERVICE);
  writeFileSync(join(dir, 'services', 'mcp.yaml'), files.mcp ?? CLEAN_MCP);
  for (const [name, text] of Object.entries(files.extra ?? {})) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}
