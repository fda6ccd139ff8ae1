#!/usr/bin/env node
// Entry point for `npx ca-a2a`. Runs the build `npm ci` made (dist/, bin/build.js) when it is
// newer than every source it was made from; otherwise, or with CA_A2A_FROM_SOURCE=1, the
// TypeScript sources through tsx, so an edited tree never runs stale code.
import { buildIsCurrent } from './build-state.js';

if (process.env.CA_A2A_FROM_SOURCE !== '1' && buildIsCurrent(new URL('../', import.meta.url))) {
  await import('../dist/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}
