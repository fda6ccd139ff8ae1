import { storableText } from '../shared/storable-text.js';
import { RULES, type Rule, type RuleInput } from './rules.js';

/** A document passes when every required rule passes and the score reaches this. */
export const PASS_THRESHOLD = 0.8;

/** One rule's line in the report. */
export interface RuleResult {
  readonly rule: string;
  readonly outcome: 'passed' | 'failed' | 'skipped';
  readonly required: boolean;
  readonly weight: number;
  readonly message?: string;
}

/** The validation stored on the document (`documents.validation`). */
export interface ValidationReport {
  /** Passed weight over applicable weight, 0..1, rounded to 2 decimals. */
  readonly score: number;
  readonly passed: boolean;
  readonly threshold: number;
  readonly failures: { rule: string; message: string; required: boolean }[];
  readonly rules: RuleResult[];
  readonly validated_at: string;
}

/** Runs every rule; a rule that throws counts as failed (a broken rule must not pass a document). */
export function evaluate(input: RuleInput, rules: readonly Rule[] = RULES, now = new Date()): ValidationReport {
  const results: RuleResult[] = rules.map((rule) => {
    let verdict;
    try {
      verdict = rule.check(input);
    } catch (error) {
      verdict = { outcome: 'failed' as const, message: `rule error: ${(error as Error).message}` };
    }
    const base = { rule: rule.name, outcome: verdict.outcome, required: rule.required, weight: rule.weight };
    return verdict.outcome === 'failed' ? { ...base, message: verdict.message } : base;
  });
  const applicable = results.filter((r) => r.outcome !== 'skipped');
  const total = applicable.reduce((sum, r) => sum + r.weight, 0);
  const earned = applicable.filter((r) => r.outcome === 'passed').reduce((sum, r) => sum + r.weight, 0);
  const score = total === 0 ? 0 : Math.round((earned / total) * 100) / 100;
  const failures = results.filter((r) => r.outcome === 'failed').map((r) => ({ rule: r.rule, message: r.message ?? '', required: r.required }));
  const passed = failures.every((f) => !f.required) && score >= PASS_THRESHOLD;
  return { score, passed, threshold: PASS_THRESHOLD, failures, rules: results, validated_at: now.toISOString() };
}

/** The document's failure reason when validation rejects it. */
export function rejectionReason(report: ValidationReport): string {
  const required = report.failures.filter((f) => f.required);
  const cause = required.length > 0
    ? `required rule failed: ${required.map((f) => `${f.rule} (${f.message})`).join('; ')}`
    : `score ${report.score.toFixed(2)} below ${report.threshold.toFixed(2)}; failed: ${report.failures.map((f) => `${f.rule} (${f.message})`).join('; ')}`;
  return storableText(`validation: ${cause}`, 2000);
}
