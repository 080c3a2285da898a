import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { CASE_LABEL, NETWORK_QUARANTINE_LABEL, QUARANTINE_LABEL } from '../../../src/containment/labels.js';
import {
  planSweep,
  staleKey,
  unaccounted,
  type SweepCase,
  type SweepInput,
} from '../../../src/containment/sweep.js';

const GRACE = 1000;

function pod(labels: Record<string, string>, uid = 'uid-1', name = 'web-0'): V1Pod {
  return { metadata: { name, namespace: 'shop', uid, resourceVersion: `rv-${uid}`, labels } };
}
const isolated = (value: string, uid = 'uid-1') =>
  pod(
    { app: 'web', [CASE_LABEL]: value, [QUARANTINE_LABEL]: 'true', [NETWORK_QUARANTINE_LABEL]: value },
    uid,
  );

function kase(
  name: string,
  opts: {
    pod?: string;
    namespace?: string;
    podUID?: string;
    release?: boolean;
    deleting?: boolean;
    released?: boolean;
    refused?: boolean;
  } = {},
): SweepCase {
  const conditions = [
    ...(opts.released ? [{ type: 'Released', status: 'True' }] : []),
    ...(opts.refused ? [{ type: 'Valid', status: 'False' }] : [{ type: 'Valid', status: 'True' }]),
  ];
  return {
    metadata: { name, ...(opts.deleting ? { deletionTimestamp: '2026-11-28T00:00:00Z' } : {}) },
    spec: {
      target: { namespace: opts.namespace ?? 'shop', pod: opts.pod ?? 'web-0' },
      release: opts.release,
    },
    status: { ...(opts.podUID ? { podUID: opts.podUID } : {}), conditions },
  };
}
const cases = (...cs: SweepCase[]) => new Map(cs.map((c) => [c.metadata!.name!, c]));

describe('unaccounted: whether an existing case accounts for a network-quarantine label', () => {
  const rows: Array<[string, SweepCase[], string | undefined]> = [
    ['an open case of that name that pinned this pod', [kase('c1', { podUID: 'uid-1' })], undefined],
    ['an open case of that name that has not pinned yet (it could still)', [kase('c1')], undefined],
    ['no case of that name', [kase('c2', { podUID: 'uid-1' })], 'no-case'],
    [
      'the case pinned another pod of the same name (a replacement)',
      [kase('c1', { podUID: 'uid-0' })],
      'case-pinned-another-pod',
    ],
    ['the case targets another pod', [kase('c1', { pod: 'web-1' })], 'case-targets-another-pod'],
    [
      'the case targets the same pod name in another namespace',
      [kase('c1', { namespace: 'tenant' })],
      'case-targets-another-pod',
    ],
    ['the case asks for release', [kase('c1', { podUID: 'uid-1', release: true })], 'case-released'],
    ['the case is being deleted', [kase('c1', { podUID: 'uid-1', deleting: true })], 'case-released'],
    ['the case is released', [kase('c1', { podUID: 'uid-1', released: true })], 'case-released'],
    [
      'the case was refused (protected namespace, invalid spec)',
      [kase('c1', { refused: true })],
      'case-refused',
    ],
  ];
  it.each(rows)('%s', (_what, existing, want) => {
    expect(unaccounted(isolated('c1'), 'c1', cases(...existing))).toBe(want);
  });
});

describe('unaccounted: another case of the same pod', () => {
  const other = (opts: Parameters<typeof kase>[1] & { isolate?: boolean } = {}) => {
    const c = kase('c2', opts);
    if (opts.isolate === false) c.spec!.containment = { isolateNetwork: false };
    return c;
  };
  const rows: Array<[string, SweepCase, string | undefined]> = [
    [
      'an open case of the pod that isolates it (the intake’s case renamed after a 409) keeps the label',
      other(),
      undefined,
    ],
    ['the same, pinned to this pod', other({ podUID: 'uid-1' }), undefined],
    ['one that does not isolate the network does not', other({ isolate: false }), 'case-released'],
    ['one pinned to another pod of that name does not', other({ podUID: 'uid-0' }), 'case-released'],
    ['a released one does not', other({ released: true }), 'case-released'],
  ];
  it.each(rows)('%s', (_what, c2, want) => {
    const named = kase('c1', { released: true });
    expect(unaccounted(isolated('c1'), 'c1', cases(named, c2), [named, c2])).toBe(want);
  });
});

describe('planSweep', () => {
  const input = (over: Partial<SweepInput>): SweepInput => ({
    pods: [isolated('c1')],
    cases: cases(),
    pendingPods: new Set(),
    staleSince: new Map(),
    now: 10_000,
    graceMs: GRACE,
    ...over,
  });

  it('a stale label seen for the first time waits out the grace, and is remembered', () => {
    const p = planSweep(input({}));
    expect(p.removals).toEqual([]);
    expect(p.waiting).toBe(1);
    expect(p.staleSince).toEqual(new Map([[staleKey('uid-1', 'c1'), 10_000]]));
  });

  it('still stale once the grace has passed: removed, with the case and quarantine labels of the same write, guarded by UID and resourceVersion', () => {
    const p = planSweep(input({ staleSince: new Map([[staleKey('uid-1', 'c1'), 10_000 - GRACE]]) }));
    expect(p.removals).toEqual([
      {
        namespace: 'shop',
        name: 'web-0',
        uid: 'uid-1',
        value: 'c1',
        reason: 'no-case',
        staleForMs: GRACE,
        patch: {
          metadata: {
            uid: 'uid-1',
            resourceVersion: 'rv-uid-1',
            labels: { [NETWORK_QUARANTINE_LABEL]: null, [CASE_LABEL]: null, [QUARANTINE_LABEL]: null },
          },
        },
      },
    ]);
    expect(p.staleSince.size).toBe(0);
  });

  it('one ms short of the grace: kept', () => {
    const p = planSweep(input({ staleSince: new Map([[staleKey('uid-1', 'c1'), 10_000 - GRACE + 1]]) }));
    expect(p.removals).toEqual([]);
    expect(p.waiting).toBe(1);
  });

  it('a case label naming another case stays (that case keeps or repairs it); only the network label goes', () => {
    const labels = { [CASE_LABEL]: 'c2', [QUARANTINE_LABEL]: 'true', [NETWORK_QUARANTINE_LABEL]: 'c1' };
    const p = planSweep(input({ pods: [pod(labels)], staleSince: new Map([[staleKey('uid-1', 'c1'), 0]]) }));
    expect(p.removals.map((r) => (r.patch as { metadata: { labels: object } }).metadata.labels)).toEqual([
      { [NETWORK_QUARANTINE_LABEL]: null },
    ]);
  });

  it('the intake of this process has yet to create the case of that pod: kept, whatever the grace, and forgotten', () => {
    const p = planSweep(
      input({ pendingPods: new Set(['shop/web-0']), staleSince: new Map([[staleKey('uid-1', 'c1'), 0]]) }),
    );
    expect(p.removals).toEqual([]);
    expect(p.waiting).toBe(0);
    expect(p.staleSince.size).toBe(0);
  });

  it('a case created meanwhile accounts for the label: kept, and its grace forgotten (a later stale spell starts anew)', () => {
    const p = planSweep(
      input({ cases: cases(kase('c1')), staleSince: new Map([[staleKey('uid-1', 'c1'), 0]]) }),
    );
    expect(p.removals).toEqual([]);
    expect(p.staleSince.size).toBe(0);
  });

  it('an open case of the pod under another name keeps a label naming a released case (it relabels the pod)', () => {
    const p = planSweep(
      input({
        cases: cases(kase('c1', { released: true }), kase('c1-2')),
        staleSince: new Map([[staleKey('uid-1', 'c1'), 0]]),
      }),
    );
    expect(p.removals).toEqual([]);
    expect(p.staleSince.size).toBe(0);
  });

  it('a changed value or a replaced pod restarts the grace', () => {
    const old = new Map([[staleKey('uid-1', 'c0'), 0]]);
    expect(planSweep(input({ staleSince: old })).removals).toEqual([]);
    const replaced = new Map([[staleKey('uid-0', 'c1'), 0]]);
    expect(planSweep(input({ staleSince: replaced })).removals).toEqual([]);
  });

  it('attack: a label naming an open case that pinned another pod is removed after the grace', () => {
    const p = planSweep(
      input({
        cases: cases(kase('c1', { podUID: 'uid-victim' })),
        staleSince: new Map([[staleKey('uid-1', 'c1'), 0]]),
      }),
    );
    expect(p.removals.map((r) => r.reason)).toEqual(['case-pinned-another-pod']);
  });

  it('a pod without name, UID or resourceVersion is skipped (nothing to guard the write with)', () => {
    const bare = { metadata: { name: 'x', namespace: 'shop', labels: { [NETWORK_QUARANTINE_LABEL]: 'c1' } } };
    const p = planSweep(input({ pods: [bare], graceMs: 0 }));
    expect(p.removals).toEqual([]);
  });

  it('a grace of 0 removes at first sight (tests only; the operator waits 15 minutes)', () => {
    expect(planSweep(input({ graceMs: 0 })).removals).toHaveLength(1);
  });
});
