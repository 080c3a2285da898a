import type { V1Node, V1Taint } from '@kubernetes/client-node';
import {
  NODE_CORDONED_BY_AMBER_ANNOTATION,
  NODE_HELD_LABEL,
  NODE_HOLDERS_ANNOTATION,
  QUARANTINE_LABEL,
  QUARANTINE_TAINT_KEY,
} from './labels.js';

export interface NodeContainment {
  cordon: boolean;
  taint: boolean;
  label: boolean;
}

/** The cases that hold a node contained, from its annotation (sorted, unique). */
export function holders(node: V1Node): string[] {
  const raw = node.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION] ?? '';
  return [
    ...new Set(
      raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ].sort();
}

export const quarantineTaint: V1Taint = { key: QUARANTINE_TAINT_KEY, value: 'true', effect: 'NoSchedule' };

/**
 * The node as it should be while `caseName` holds it (added) or after it lets go (removed).
 * Every case on a node is listed in an annotation (and the node carries the held label while
 * any case does); the node is uncordoned, untainted and
 * unlabelled only when the last holder lets go, and never uncordoned if someone else had
 * cordoned it before Amber did. Returns undefined when nothing changes.
 */
export function nodePatch(
  node: V1Node,
  caseName: string,
  hold: boolean,
  want: NodeContainment,
): NodeChange | undefined {
  const before = holders(node);
  const after = hold ? [...new Set([...before, caseName])].sort() : before.filter((h) => h !== caseName);
  const annotations = node.metadata?.annotations ?? {};
  const labels = node.metadata?.labels ?? {};
  const taints = node.spec?.taints ?? [];
  const hasTaint = taints.some((t) => t.key === QUARANTINE_TAINT_KEY && t.effect === 'NoSchedule');
  const unschedulable = node.spec?.unschedulable === true;
  const cordonedByAmber = annotations[NODE_CORDONED_BY_AMBER_ANNOTATION] === 'true';

  const change: NodeChange = { annotations: {}, labels: {} };
  if (after.join(',') !== before.join(','))
    change.annotations[NODE_HOLDERS_ANNOTATION] = after.length ? after.join(',') : null;

  if (after.length > 0) {
    if (labels[NODE_HELD_LABEL] !== 'true') change.labels[NODE_HELD_LABEL] = 'true';
    if (hold && want.cordon && !unschedulable) {
      change.unschedulable = true;
      change.annotations[NODE_CORDONED_BY_AMBER_ANNOTATION] = 'true';
    }
    if (hold && want.taint && !hasTaint) change.taints = [...taints, quarantineTaint];
    if (hold && want.label && labels[QUARANTINE_LABEL] !== 'true') change.labels[QUARANTINE_LABEL] = 'true';
  } else {
    if (cordonedByAmber) {
      change.unschedulable = false;
      change.annotations[NODE_CORDONED_BY_AMBER_ANNOTATION] = null;
    }
    if (hasTaint) change.taints = taints.filter((t) => t.key !== QUARANTINE_TAINT_KEY);
    if (QUARANTINE_LABEL in labels) change.labels[QUARANTINE_LABEL] = null;
    if (NODE_HELD_LABEL in labels) change.labels[NODE_HELD_LABEL] = null;
  }
  const empty =
    !Object.keys(change.annotations).length &&
    !Object.keys(change.labels).length &&
    change.unschedulable === undefined &&
    !change.taints;
  return empty ? undefined : change;
}

export interface NodeChange {
  /** null removes the key (JSON merge patch). */
  annotations: Record<string, string | null>;
  labels: Record<string, string | null>;
  unschedulable?: boolean;
  taints?: V1Taint[];
}

/** The JSON merge patch for a change, guarded by resourceVersion so a concurrent writer conflicts. */
export function nodeMergePatch(node: V1Node, change: NodeChange): object {
  const spec: Record<string, unknown> = {};
  if (change.unschedulable !== undefined) spec.unschedulable = change.unschedulable || null;
  if (change.taints) spec.taints = change.taints;
  return {
    metadata: {
      resourceVersion: node.metadata?.resourceVersion,
      annotations: change.annotations,
      labels: change.labels,
    },
    ...(Object.keys(spec).length ? { spec } : {}),
  };
}
