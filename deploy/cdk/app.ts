import { App } from 'aws-cdk-lib';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';
import { readConfig } from './config.js';
import { CaA2aStack } from './stack.js';

export interface CreateAppOptions {
  readonly outdir: string;
  /** Context values, as `-c key=value` would give them; they win over the feature flags. */
  readonly context?: Readonly<Record<string, unknown>>;
}

/**
 * Builds the app without the CDK CLI: the recommended feature flags a `cdk init` project would
 * get, plus the caller's context. No lookups, so it synthesises offline and without credentials.
 */
export function createApp(options: CreateAppOptions): { app: App; stack: CaA2aStack } {
  const app = new App({
    outdir: options.outdir,
    context: { ...CURRENTLY_RECOMMENDED_FLAGS, ...options.context },
  });
  const config = readConfig(app);
  const stack = new CaA2aStack(app, 'CaA2a', {
    env: { account: config.account, region: config.region },
    description: 'ca-a2a: sidecar-protected agents on ECS Fargate',
    config,
  });
  return { app, stack };
}
