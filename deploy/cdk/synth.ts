/**
 * `npm run synth`: writes the CloudFormation templates to deploy/cdk/cdk.out. Context comes from
 * CA_A2A_CDK_CONTEXT (a JSON object) so operators can set values without the CDK CLI.
 */
import { fileURLToPath } from 'node:url';
import { createApp } from './app.js';

function contextFromEnv(): Record<string, unknown> {
  const raw = process.env['CA_A2A_CDK_CONTEXT'];
  if (raw === undefined || raw === '') return {};
  const parsed: unknown = JSON.parse(raw);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error('CA_A2A_CDK_CONTEXT must be a JSON object of context values');
  }
  return parsed as Record<string, unknown>;
}

const outdir = fileURLToPath(new URL('./cdk.out', import.meta.url));
const { app } = createApp({ outdir, context: contextFromEnv() });
const assembly = app.synth();
for (const stack of assembly.stacks) process.stdout.write(`${stack.stackName}: ${stack.templateFullPath}\n`);
