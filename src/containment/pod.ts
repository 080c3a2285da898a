import type { V1LabelSelector, V1Pod } from '@kubernetes/client-node';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  ORIGINAL_LABELS_ANNOTATION,
  QUARANTINE_LABEL,
} from './labels.js';

export type Labels = Record<string, string>;

/** Does a selector match these labels? (Service selectors are plain maps; workloads use LabelSelector.) */
export function selectorMatches(selector: V1LabelSelector | Labels | undefined, labels: Labels): boolean {
  if (!selector) return false;
  const { matchLabels, matchExpressions } = isLabelSelector(selector)
    ? selector
    : { matchLabels: selector, matchExpressions: [] };
  // An empty selector selects nothing here (a Service without a selector routes nowhere).
  if (!Object.keys(matchLabels ?? {}).length && !matchExpressions?.length) return false;
  for (const [k, v] of Object.entries(matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of matchExpressions ?? []) {
    const has = e.key in labels;
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !e.values?.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && e.values?.includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

function isLabelSelector(s: V1LabelSelector | Labels): s is V1LabelSelector {
  return (
    typeof (s as V1LabelSelector).matchLabels === 'object' ||
    Array.isArray((s as V1LabelSelector).matchExpressions)
  );
}

/** The label keys a selector relies on: removing any of them detaches the pod from it. */
export function selectorKeys(selector: V1LabelSelector | Labels | undefined): string[] {
  if (!selector) return [];
  if (isLabelSelector(selector)) {
    return [
      ...Object.keys(selector.matchLabels ?? {}),
      ...(selector.matchExpressions ?? [])
        .filter((e) => e.operator !== 'DoesNotExist' && e.operator !== 'NotIn')
        .map((e) => e.key),
    ];
  }
  return Object.keys(selector);
}

export interface PodLabelPlan {
  /** The labels the pod should carry. */
  labels: Labels;
  /** The labels removed, to be kept in the original-labels annotation. */
  removed: Labels;
}

/**
 * The labels that quarantine a pod for a case; with `network`, also the one the namespace's
 * standing deny-all policy selects (ADR 0025).
 */
export function caseLabels(caseName: string, network: boolean): Labels {
  return {
    [CASE_LABEL]: caseName,
    [QUARANTINE_LABEL]: 'true',
    ...(network ? { [NETWORK_QUARANTINE_LABEL]: caseName } : {}),
  };
}

/** Does the pod carry every label caseLabels() would give it? */
export function hasCaseLabels(pod: V1Pod, caseName: string, network: boolean): boolean {
  const labels = pod.metadata?.labels ?? {};
  return Object.entries(caseLabels(caseName, network)).every(([k, v]) => labels[k] === v);
}

/**
 * Quarantine labels for a suspect pod. With `detach`, the labels its owner's selector and
 * the matching Services use are taken off, so the ReplicaSet replaces the pod (it keeps
 * serving) and Services stop sending it traffic; the pod itself keeps running.
 */
export function quarantineLabels(
  pod: V1Pod,
  caseName: string,
  detachKeys: string[],
  detach: boolean,
  network = false,
): PodLabelPlan {
  const current: Labels = { ...(pod.metadata?.labels ?? {}) };
  const removed: Labels = {};
  const own = new Set([CASE_LABEL, QUARANTINE_LABEL, NETWORK_QUARANTINE_LABEL]);
  if (detach) {
    for (const key of detachKeys) {
      if (key in current && !own.has(key)) {
        removed[key] = current[key]!;
        delete current[key];
      }
    }
  }
  return { labels: { ...current, ...caseLabels(caseName, network) }, removed };
}

/** The original labels recorded on the pod when it was detached. */
export function originalLabels(pod: V1Pod): Labels {
  const raw = pod.metadata?.annotations?.[ORIGINAL_LABELS_ANNOTATION];
  if (!raw) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return Object.fromEntries(
        Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'),
      );
    }
  } catch {
    // An annotation someone edited into garbage: nothing to restore.
  }
  return {};
}

/**
 * Does the pod carry this case's label? Only meaningful for the pod the case pinned: anyone who
 * may patch a pod can write any case's name on it.
 */
export function isQuarantinedBy(pod: V1Pod, caseName: string): boolean {
  return pod.metadata?.labels?.[CASE_LABEL] === caseName;
}
