import type { V1Pod } from '@kubernetes/client-node';
import { CASE_LABEL, NETWORK_QUARANTINE_LABEL, QUARANTINE_LABEL } from './labels.js';

/**
 * The quarantine sweep's decisions (ADR 0027): which network-quarantine labels no ForensicCase
 * accounts for, and which of those have stayed unaccounted long enough to be removed. Pure, so
 * every rule is a row in test/unit/containment/sweep.test.ts; the sweeper (cases/sweeper.ts)
 * gathers and applies.
 *
 * A label is removed only when all of these hold:
 *  1. No case accounts for it (the case it names, or another open case of the pod that isolates
 *     it: that case's reconciler relabels the pod), in a list of the cases read after the pods
 *     were listed: every label a reconciler writes is written after its case exists, and every
 *     label the intake writes follows its log record, so a case created before that list is in it.
 *  2. The intake of this process has no case create waiting for the pod (read between the two
 *     lists: a record still waiting then, or a case created before the case list).
 *  3. The same label on the same pod (UID and value) was unaccounted at every pass for at least
 *     the grace, by this process's clock: the other replicas' intakes, whose waiting records
 *     this process cannot see, write their case within the grace (ADR 0027 gives the bound).
 *  4. The write carries the pod's UID and resourceVersion as listed: a case that adopted the
 *     pod since (any relabelling) makes it fail with 409, and nothing is removed.
 */

/** The fields of a ForensicCase the sweep reads; anything else passes through. */
export interface SweepCase {
  metadata?: { name?: string; deletionTimestamp?: unknown };
  spec?: {
    target?: { namespace?: string; pod?: string };
    release?: boolean;
    containment?: { isolateNetwork?: boolean };
  };
  status?: { podUID?: string; conditions?: Array<{ type?: string; status?: string }> };
}

export type StaleReason =
  'no-case' | 'case-released' | 'case-refused' | 'case-targets-another-pod' | 'case-pinned-another-pod';

/**
 * Why no case accounts for `value` on this pod, or undefined when one does. The case of that name
 * does when it is open, targets this pod by namespace and name, and pinned this pod's UID or none
 * yet (it could still pin it; an earlier version's case may carry its pin on its own policy).
 * So does any other open case of this pod that isolates its network: its reconciler rewrites
 * the label with its own name, and removing it first would only open a gap (the intake's case
 * renamed after a 409 labels the pod with the first name, ADR 0025).
 */
export function unaccounted(
  pod: V1Pod,
  value: string,
  cases: ReadonlyMap<string, SweepCase>,
  ofPod: readonly SweepCase[] = [],
): StaleReason | undefined {
  const kase = cases.get(value);
  const reason = kase ? whyNot(kase, pod) : 'no-case';
  if (!reason) return undefined;
  if (ofPod.some((c) => c.spec?.containment?.isolateNetwork !== false && !whyNot(c, pod))) return undefined;
  return reason;
}

/** Why this case does not keep this pod isolated, or undefined when it does (or may yet). */
function whyNot(kase: SweepCase, pod: V1Pod): StaleReason | undefined {
  const conditions = kase.status?.conditions ?? [];
  if (
    kase.spec?.release === true ||
    kase.metadata?.deletionTimestamp !== undefined ||
    conditions.some((c) => c.type === 'Released' && c.status === 'True')
  )
    return 'case-released';
  // Refused (protected namespace, invalid spec): its reconciler never isolates anything.
  if (conditions.some((c) => c.type === 'Valid' && c.status === 'False')) return 'case-refused';
  const target = kase.spec?.target;
  if (target?.namespace !== pod.metadata?.namespace || target?.pod !== pod.metadata?.name)
    return 'case-targets-another-pod';
  const pinned = kase.status?.podUID;
  if (pinned && pinned !== pod.metadata?.uid) return 'case-pinned-another-pod';
  return undefined;
}

export interface SweepInput {
  /** Pods carrying NETWORK_QUARANTINE_LABEL, listed before `cases`. */
  pods: readonly V1Pod[];
  /** Every ForensicCase by name, listed from the API server after `pods`. */
  cases: ReadonlyMap<string, SweepCase>;
  /** `namespace/pod` of every case this process's intake has yet to create (read between the lists). */
  pendingPods: ReadonlySet<string>;
  /** When each unaccounted label was first seen, by staleKey; the previous plan's `staleSince`. */
  staleSince: ReadonlyMap<string, number>;
  now: number;
  graceMs: number;
}

export interface Removal {
  namespace: string;
  name: string;
  uid: string;
  value: string;
  reason: StaleReason;
  staleForMs: number;
  /** A merge patch guarded by the pod's UID and resourceVersion. */
  patch: object;
}

export interface SweepPlan {
  removals: Removal[];
  /** Labels unaccounted now and still within the grace: the next pass's `staleSince`. */
  staleSince: Map<string, number>;
  /** Unaccounted labels kept for now (within the grace), for the log. */
  waiting: number;
}

/**
 * A label changes identity with its pod's UID or its value: either restarts the grace. Per value
 * on purpose: a label gone and back with another case's name between two passes may be a new
 * alert's, whose case another replica is still writing (an attacker who may patch the pod can
 * use this to keep it isolated; ADR 0027 weighs the two).
 */
export const staleKey = (uid: string, value: string) => `${uid}/${value}`;

export function planSweep(input: SweepInput): SweepPlan {
  const removals: Removal[] = [];
  const staleSince = new Map<string, number>();
  let waiting = 0;
  const byPod = new Map<string, SweepCase[]>();
  for (const c of input.cases.values()) {
    const key = `${c.spec?.target?.namespace}/${c.spec?.target?.pod}`;
    byPod.set(key, [...(byPod.get(key) ?? []), c]);
  }
  for (const pod of input.pods) {
    const labels = pod.metadata?.labels ?? {};
    const value = labels[NETWORK_QUARANTINE_LABEL];
    const { namespace, name, uid, resourceVersion } = pod.metadata ?? {};
    if (value === undefined || !namespace || !name || !uid || !resourceVersion) continue;
    if (input.pendingPods.has(`${namespace}/${name}`)) continue;
    const reason = unaccounted(pod, value, input.cases, byPod.get(`${namespace}/${name}`));
    if (!reason) continue;
    const key = staleKey(uid, value);
    const since = input.staleSince.get(key) ?? input.now;
    const staleForMs = input.now - since;
    if (staleForMs < input.graceMs) {
      staleSince.set(key, since);
      waiting++;
      continue;
    }
    // The case and quarantine labels go too when they are the same write's (the intake puts all
    // three); a case label naming another case is that case's to keep or repair.
    const sameCase = labels[CASE_LABEL] === value;
    removals.push({
      namespace,
      name,
      uid,
      value,
      reason,
      staleForMs,
      patch: {
        metadata: {
          uid,
          resourceVersion,
          labels: {
            [NETWORK_QUARANTINE_LABEL]: null,
            ...(sameCase ? { [CASE_LABEL]: null, [QUARANTINE_LABEL]: null } : {}),
          },
        },
      },
    });
  }
  return { removals, staleSince, waiting };
}
