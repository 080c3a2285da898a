import { z } from 'zod';
import type { Condition } from '../api/common.js';
import { ResponsePolicySpec, type ResponsePolicyStatus } from '../api/responsepolicy.js';
import type { NamedPolicy } from './policy.js';

/**
 * Whether a ResponsePolicy is in force, and why not: pure decisions, tested with tables. The
 * intake writes the result as the `InForce` condition (policystatus-writer in index.ts), so a
 * platform team sees on the object itself why a policy from Git does nothing (ADR 0011).
 */

export const IN_FORCE = 'InForce';

/** A ResponsePolicy as the informer delivers it: nothing in it is trusted yet. */
export interface PolicyItem {
  metadata?: { name?: string; generation?: number; resourceVersion?: string };
  spec?: unknown;
  status?: { observedGeneration?: number; conditions?: readonly Condition[] };
}

export interface PolicyEvaluation {
  /** The policy to match alerts with; absent when it is not in force. */
  policy?: NamedPolicy;
  condition: Pick<Condition, 'status' | 'reason' | 'message'>;
}

/** How much of a validation message is kept on the object. */
const MAX_MESSAGE = 4_096;

export function evaluatePolicy(item: PolicyItem): PolicyEvaluation {
  const name = item.metadata?.name ?? '';
  const parsed = ResponsePolicySpec.safeParse(item.spec ?? {});
  if (!parsed.success) {
    const detail = z.prettifyError(parsed.error);
    return {
      condition: {
        status: 'False',
        reason: 'InvalidSpec',
        message: `not in force: the spec is invalid:\n${detail}`.slice(0, MAX_MESSAGE),
      },
    };
  }
  const policy = { name, spec: parsed.data };
  if (parsed.data.dryRun) {
    return {
      policy,
      condition: {
        status: 'True',
        reason: 'DryRun',
        message:
          'in force as a dry run: matching alerts are counted and reported (metric, log, DryRun Event), no case is opened',
      },
    };
  }
  return {
    policy,
    condition: { status: 'True', reason: 'Valid', message: 'in force: matching alerts open cases' },
  };
}

/**
 * The status to write, or undefined when the object already says it. lastTransitionTime moves
 * only when the condition's status changes (as cert-manager and the API conventions do).
 */
export function desiredStatus(
  item: PolicyItem,
  evaluation: PolicyEvaluation,
  now: Date,
): ResponsePolicyStatus | undefined {
  const generation = item.metadata?.generation;
  const current = item.status?.conditions?.find((c) => c.type === IN_FORCE);
  const { status, reason, message } = evaluation.condition;
  const unchanged =
    current !== undefined &&
    current.status === status &&
    current.reason === reason &&
    current.message === message &&
    current.observedGeneration === generation &&
    item.status?.observedGeneration === generation;
  if (unchanged) return undefined;
  const condition: Condition = {
    type: IN_FORCE,
    status,
    reason,
    message,
    lastTransitionTime:
      current && current.status === status
        ? current.lastTransitionTime
        : now.toISOString().replace(/\.\d+Z$/, 'Z'),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
  const others = (item.status?.conditions ?? []).filter((c) => c.type !== IN_FORCE);
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    conditions: [...others, condition],
  };
}
