import { readFileSync, writeFileSync } from 'node:fs';
import { readPolicySchema } from '../validate-file.js';
import { parseCommandArgs, processIo, stringOption, usageError, type Io } from './io.js';
import { projectPath } from '../../paths.js';

type Schema = Record<string, unknown> & {
  type?: string | string[]; description?: string; default?: unknown; enum?: unknown[]; const?: unknown;
  properties?: Record<string, Schema>; additionalProperties?: boolean | Schema; items?: Schema; required?: string[];
  $ref?: string; definitions?: Record<string, Schema>; pattern?: string; minimum?: number; maximum?: number;
};

interface FieldRow { path: string; type: string; required: boolean; defaultValue: string; description: string }

export const BEGIN_MARKER = '<!-- BEGIN GENERATED FIELD REFERENCE: npx ca-a2a policy docs --write docs/policy.md -->';
export const END_MARKER = '<!-- END GENERATED FIELD REFERENCE -->';

/** The field reference of both policy file formats (and test files), from their JSON Schemas. */
export function renderFieldReference(): string {
  const testSchema = JSON.parse(readFileSync(projectPath('proxy/policy/tooling/test-file.schema.json'), 'utf8')) as Schema;
  const sections = [
    { title: 'Service policy — `policies/services/NAME.yaml`', schema: readPolicySchema('service') as Schema },
    { title: 'Roles — `policies/rbac.yaml`', schema: readPolicySchema('rbac') as Schema },
    { title: 'Policy tests — `policies/tests/*.yaml`', schema: testSchema },
  ];
  const body = sections.map(({ title, schema }) => {
    const rows: FieldRow[] = [];
    collect(schema, schema, '', rows);
    const table = rows.map((row) => `| \`${row.path}\` | ${row.type}${row.required ? ' (required)' : ''} | ${row.defaultValue} | ${escape(row.description)} |`);
    return [`### ${title}`, '', escape(schema.description ?? ''), '', '| field | type | default | meaning |', '|---|---|---|---|', ...table].join('\n');
  });
  return [BEGIN_MARKER, '', ...body.flatMap((section) => [section, '']), END_MARKER].join('\n');
}

function collect(root: Schema, schema: Schema, prefix: string, rows: FieldRow[]): void {
  const resolved = deref(root, schema);
  for (const [name, raw] of Object.entries(resolved.properties ?? {})) {
    const child = deref(root, raw);
    const path = prefix ? `${prefix}.${name}` : name;
    rows.push({ path, type: typeOf(root, child), required: resolved.required?.includes(name) ?? false, defaultValue: defaultOf(child), description: child.description ?? raw.description ?? '' });
    descend(root, child, path, rows);
  }
}

function descend(root: Schema, child: Schema, path: string, rows: FieldRow[]): void {
  if (child.properties) collect(root, child, path, rows);
  const items = child.items ? deref(root, child.items) : undefined;
  if (items?.properties) collect(root, items, `${path}[]`, rows);
  if (typeof child.additionalProperties === 'object') {
    const value = deref(root, child.additionalProperties);
    if (value.properties) collect(root, value, `${path}.<name>`, rows);
  }
}

function deref(root: Schema, schema: Schema): Schema {
  const ref = schema.$ref;
  if (typeof ref !== 'string' || !ref.startsWith('#/definitions/')) return schema;
  return { ...(root.definitions?.[ref.slice('#/definitions/'.length)] ?? {}), ...(schema.description ? { description: schema.description } : {}) };
}

function typeOf(root: Schema, schema: Schema): string {
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``;
  if (schema.enum) return schema.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  if (schema.type === 'array') {
    const items = schema.items ? deref(root, schema.items) : undefined;
    return `list of ${items ? typeOf(root, items) : 'any'}`;
  }
  if (schema.type === 'object' && typeof schema.additionalProperties === 'object' && !schema.properties) return 'map of name → object';
  const range = schema.minimum !== undefined || schema.maximum !== undefined ? ` ${schema.minimum ?? ''}..${schema.maximum ?? ''}` : '';
  return `${Array.isArray(schema.type) ? schema.type.join(' \\| ') : (schema.type ?? 'any')}${range}`;
}

function defaultOf(schema: Schema): string {
  if (schema.default === undefined) return '';
  return `\`${JSON.stringify(schema.default)}\``.replace(/\|/g, '\\|');
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** Replaces the generated section of a Markdown file (between the markers) with `section`. */
export function spliceGenerated(document: string, section: string): string {
  const begin = document.indexOf(BEGIN_MARKER);
  const end = document.indexOf(END_MARKER);
  if (begin < 0 || end < begin) throw new Error(`markers not found: add ${BEGIN_MARKER} and ${END_MARKER}`);
  return document.slice(0, begin) + section + document.slice(end + END_MARKER.length);
}

const HELP = `usage: ca-a2a policy docs [--write FILE | --check FILE]

Prints the policy field reference generated from proxy/policy/schemas/*.schema.json.
--write FILE replaces the generated section of FILE (docs/policy.md); --check FILE exits 1
when that section is out of date.
`;

export async function docsCommand(argv: string[], io: Io = processIo): Promise<number> {
  const args = parseCommandArgs(argv, { write: { type: 'string' }, check: { type: 'string' } }, HELP, io, 'docs', false);
  if ('exit' in args) return args.exit;
  const write = stringOption(args, 'write');
  const check = stringOption(args, 'check');
  if (write !== undefined && check !== undefined) return usageError(io, 'docs', 'give --write FILE or --check FILE, not both', HELP);
  const section = renderFieldReference();
  if (write !== undefined) {
    writeFileSync(write, spliceGenerated(readFileSync(write, 'utf8'), section));
    io.out(`${write}: field reference updated\n`);
    return 0;
  }
  if (check !== undefined) {
    const current = readFileSync(check, 'utf8');
    if (spliceGenerated(current, section) === current) return 0;
    io.err(`${check}: the field reference is out of date; run: npx ca-a2a policy docs --write ${check}\n`);
    return 1;
  }
  io.out(`${section}\n`);
  return 0;
}
