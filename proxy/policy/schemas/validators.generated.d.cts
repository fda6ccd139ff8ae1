// Types of validators.generated.cjs (bin/gen-policy-validators.js).
import type { ValidateFunction } from 'ajv';

export declare const service: ValidateFunction;
export declare const rbac: ValidateFunction;
