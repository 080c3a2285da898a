import type { V1Node } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  NODE_CORDONED_BY_AMBER_ANNOTATION,
  NODE_HELD_LABEL,
  NODE_HOLDERS_ANNOTATION,
  QUARANTINE_LABEL,
  QUARANTINE_TAINT_KEY,
} from '../../../src/containment/labels.js';
import { holders, nodeMergePatch, nodePatch } from '../../../src/containment/node.js';

const all = { cordon: true, taint: true, label: true };

function node(
  annotations: Record<string, string> = {},
  spec: V1Node['spec'] = {},
  labels: Record<string, string> = {},
): V1Node {
  return { metadata: { name: 'n1', resourceVersion: '7', annotations, labels }, spec };
}

/** Applies a change the way the API server applies the merge patch. */
function apply(n: V1Node, change: NonNullable<ReturnType<typeof nodePatch>>): V1Node {
  const annotations = { ...(n.metadata?.annotations ?? {}) };
  for (const [k, v] of Object.entries(change.annotations)) {
    if (v === null) delete annotations[k];
    else annotations[k] = v;
  }
  const labels = { ...(n.metadata?.labels ?? {}) };
  for (const [k, v] of Object.entries(change.labels)) {
    if (v === null) delete labels[k];
    else labels[k] = v;
  }
  return {
    metadata: { ...n.metadata, annotations, labels },
    spec: {
      ...n.spec,
      ...(change.unschedulable !== undefined ? { unschedulable: change.unschedulable } : {}),
      ...(change.taints ? { taints: change.taints } : {}),
    },
  };
}

describe('node containment', () => {
  it('cordons, labels and taints NoSchedule (never NoExecute) for the first case', () => {
    const change = nodePatch(node(), 'case-a', true, all)!;
    expect(change.unschedulable).toBe(true);
    expect(change.taints).toEqual([{ key: QUARANTINE_TAINT_KEY, value: 'true', effect: 'NoSchedule' }]);
    expect(change.labels[QUARANTINE_LABEL]).toBe('true');
    expect(change.annotations[NODE_HOLDERS_ANNOTATION]).toBe('case-a');
    expect(change.labels[NODE_HELD_LABEL]).toBe('true');
    expect(change.taints!.some((t) => t.effect === 'NoExecute')).toBe(false);
  });

  it('is idempotent: a node already held by the case needs no change', () => {
    const held = apply(node(), nodePatch(node(), 'case-a', true, all)!);
    expect(nodePatch(held, 'case-a', true, all)).toBeUndefined();
  });

  it('keeps the node cordoned until the last of two cases lets go', () => {
    let n = apply(node(), nodePatch(node(), 'case-a', true, all)!);
    n = apply(n, nodePatch(n, 'case-b', true, all)!);
    expect(holders(n)).toEqual(['case-a', 'case-b']);

    const first = nodePatch(n, 'case-a', false, all)!;
    expect(first.unschedulable).toBeUndefined();
    expect(first.taints).toBeUndefined();
    n = apply(n, first);
    expect(n.spec?.unschedulable).toBe(true);

    const last = nodePatch(n, 'case-b', false, all)!;
    n = apply(n, last);
    expect(n.spec?.unschedulable).toBe(false);
    expect(n.spec?.taints).toEqual([]);
    expect(n.metadata?.labels?.[QUARANTINE_LABEL]).toBeUndefined();
    expect(n.metadata?.labels?.[NODE_HELD_LABEL]).toBeUndefined();
    expect(n.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]).toBeUndefined();
  });

  it('never uncordons a node an administrator had cordoned before Amber', () => {
    const adminCordoned = node({}, { unschedulable: true });
    const held = apply(adminCordoned, nodePatch(adminCordoned, 'case-a', true, all)!);
    expect(held.metadata?.annotations?.[NODE_CORDONED_BY_AMBER_ANNOTATION]).toBeUndefined();
    const released = apply(held, nodePatch(held, 'case-a', false, all)!);
    expect(released.spec?.unschedulable).toBe(true);
  });

  it('keeps taints it does not own', () => {
    const other = { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' };
    const n = node({}, { taints: [other] });
    const held = apply(n, nodePatch(n, 'c', true, all)!);
    expect(held.spec?.taints).toHaveLength(2);
    const released = apply(held, nodePatch(held, 'c', false, all)!);
    expect(released.spec?.taints).toEqual([other]);
  });

  it('only records the holder (and marks the node held) when no node action is wanted', () => {
    const change = nodePatch(node(), 'c', true, { cordon: false, taint: false, label: false })!;
    expect(change).toEqual({
      annotations: { [NODE_HOLDERS_ANNOTATION]: 'c' },
      labels: { [NODE_HELD_LABEL]: 'true' },
    });
  });

  it('puts back a held label someone removed while a case still holds the node', () => {
    const held = apply(node(), nodePatch(node(), 'c', true, all)!);
    delete held.metadata!.labels![NODE_HELD_LABEL];
    expect(nodePatch(held, 'c', true, all)).toEqual({
      annotations: {},
      labels: { [NODE_HELD_LABEL]: 'true' },
    });
  });

  it('guards the merge patch with the node resourceVersion', () => {
    const n = node();
    expect(nodeMergePatch(n, nodePatch(n, 'c', true, all)!)).toMatchObject({
      metadata: { resourceVersion: '7' },
      spec: { unschedulable: true },
    });
  });
});
