import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Annotations, Template } from 'aws-cdk-lib/assertions';
import { createApp } from '../../../deploy/cdk/app.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import type { Resources } from '../cfn.js';

/**
 * The stack as deploy/cdk builds it without context, synthesised once per test process (about 8 s)
 * and shared by every suite of test/deploy/cdk.test.ts, plus what those suites say of it.
 */
export interface DefaultStack {
  readonly template: Template;
  readonly resources: Resources;
  readonly annotations: Annotations;
  /** The context lookups the synthesis asked for (none: it runs offline). */
  readonly missingContext: unknown;
}

let synthesised: DefaultStack | undefined;

/** Synthesises the default stack on the first call; later calls answer the same. */
export function defaultStack(): DefaultStack {
  if (synthesised) return synthesised;
  const { app, stack } = createApp({ outdir: tempDirSync('cdk') });
  const template = Template.fromStack(stack);
  const annotations = Annotations.fromStack(stack);
  const missingContext = app.synth().manifest.missing;
  synthesised = { template, resources: template.toJSON()['Resources'] as Resources, annotations, missingContext };
  return synthesised;
}

export const SIDECAR_PORTS = { mcp: 8000, orchestrator: 8001, extractor: 8002, validator: 8003, archivist: 8004, admin: 8005 } as const;
export type Secured = keyof typeof SIDECAR_PORTS;
export const SECURED = Object.keys(SIDECAR_PORTS) as Secured[];
export const AGENTS = ['orchestrator', 'extractor', 'validator', 'archivist'] as const;
/** A security group by its description's name. */
export const sg = (name: string): string => `ca-a2a ${name}`;
export const repoFile = (relative: string): string => readFileSync(fileURLToPath(new URL(`../../../${relative}`, import.meta.url)), 'utf8');
