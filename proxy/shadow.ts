import type { AuditLog } from './observe/audit.js';
import type { SidecarMetrics } from './observe/metrics.js';
import type { ShadowDisagreement } from './layers/shadow.js';
import { formatProblem, isPolicyLoadError } from './policy/errors.js';
import { loadPolicy, type PolicyOverrides } from './policy/load.js';
import type { ServicePolicy } from './policy/model.js';

const ENFORCED_VERB = { allow: 'allows', deny: 'denies', would_deny: 'would deny (dry-run: forwarded)' } as const;

/**
 * The candidate policy of `--shadow-policy FILE`: loaded like the enforced one (an invalid file
 * refuses the start, so an operator notices), reloaded beside it, and on a failed reload kept
 * as it was: the shadow never takes the enforced policy's reload down with it.
 */
export class ShadowPolicySource {
  readonly #file: string;
  readonly #overrides: PolicyOverrides;
  readonly #service: string;
  readonly #metrics: SidecarMetrics;
  readonly #audit: AuditLog;
  #policy: ServicePolicy;
  /** The files a refused candidate read or looked for, watched until a reload succeeds. */
  #looked: readonly string[] = [];

  constructor(file: string, overrides: PolicyOverrides, observe: { service: string; metrics: SidecarMetrics; audit: AuditLog }) {
    this.#file = file;
    this.#overrides = overrides;
    this.#service = observe.service;
    this.#metrics = observe.metrics;
    this.#audit = observe.audit;
    this.#policy = this.#load();
  }

  get policy(): ServicePolicy {
    return this.#policy;
  }

  /** Reloads the candidate. A broken one is logged and the previous one kept ('failed'). */
  reload(): 'changed' | 'unchanged' | 'failed' {
    try {
      const next = this.#load();
      this.#looked = [];
      if (next.version === this.#policy.version) return 'unchanged';
      this.#policy = next;
      this.#audit.event('shadow_policy_reloaded', { shadow_version: next.version }, 'shadow policy reloaded');
      return 'changed';
    } catch (error) {
      const problems = isPolicyLoadError(error) ? error.problems.map(formatProblem) : [(error as Error).message];
      this.#looked = isPolicyLoadError(error) ? error.files : [];
      this.#audit.event('shadow_policy_reload_failed', { shadow_version: this.#policy.version, problems }, 'shadow policy reload refused; previous candidate kept', 'error');
      return 'failed';
    }
  }

  /** What the pipeline's shadow layer needs, for the enforced policy being built. */
  layerDeps(): { readonly policy: ServicePolicy; readonly onDisagreement: ShadowDisagreement } {
    const shadow = this.#policy;
    return {
      policy: shadow,
      onDisagreement: (ctx, enforced, candidate) => {
        this.#metrics.shadowDisagreements.inc({ service: this.#service, enforced: enforced.decision, shadow: candidate.decision });
        const principal = ctx.principal;
        this.#audit.event('shadow_disagreement', {
          request_id: ctx.requestId,
          policy_version: ctx.policy.version,
          shadow_version: shadow.version,
          enforced: enforced.decision,
          enforced_code: enforced.code,
          shadow: candidate.decision,
          shadow_code: candidate.code,
          method: ctx.calls.map((call) => call.method).join(','),
          tool: ctx.calls.find((call) => call.tool !== undefined)?.tool,
          subject: principal?.subject,
          client_id: principal?.clientId,
          roles: principal?.roles,
        }, `shadow policy would ${candidate.decision} what the enforced policy ${ENFORCED_VERB[enforced.decision]}`, 'warn');
      },
    };
  }

  /** The candidate's files, and those of a refused edit of it. */
  files(): readonly string[] {
    return [...this.#policy.files, ...this.#looked];
  }

  #load(): ServicePolicy {
    const policy = loadPolicy(this.#file, this.#overrides);
    if (policy.service !== this.#service) throw new Error(`shadow policy ${this.#file} is for service '${policy.service}', not '${this.#service}'`);
    return policy;
  }
}
