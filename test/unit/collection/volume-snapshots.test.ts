import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  ForensicCase,
  type ForensicCaseStatus,
  type VolumeSnapshotRecord,
} from '../../../src/api/forensiccase.js';
import { CASE_LABEL } from '../../../src/containment/labels.js';
import {
  CASE_UID_ANNOTATION,
  CLAIM_ANNOTATION,
  DEFAULT_CLASS_ANNOTATION,
  chooseClass,
  needsGather,
  pendingSnapshots,
  planSnapshots,
  podClaims,
  snapshotBody,
  snapshotName,
  wantsSnapshots,
  type ClaimWorld,
  type SnapshotAction,
  type VolumeSnapshot,
  type VolumeSnapshotClass,
} from '../../../src/collection/volume-snapshots.js';

const CASE_UID = 'case-uid';
const NOW = '2026-11-28T10:00:00.000Z';
const NAME = snapshotName('c1', CASE_UID, 'data');

function kase(collection: Record<string, unknown> = {}): ForensicCase {
  return ForensicCase.parse({
    apiVersion: 'forensics.amber.io/v1alpha1',
    kind: 'ForensicCase',
    metadata: { name: 'c1', uid: CASE_UID, generation: 1 },
    spec: { target: { namespace: 'shop', pod: 'web-0' }, reason: 'test', collection },
  });
}

const cls = { name: 'csi-snap', deletionPolicy: 'Retain' };
const claim = (extra: Partial<ClaimWorld> = {}): ClaimWorld => ({
  volume: 'disk',
  claim: 'data',
  driver: 'hostpath.amber.test',
  snapshotClass: cls,
  ...extra,
});
const ours = (status: VolumeSnapshot['status'] = {}, uid = 'vs-uid'): VolumeSnapshot => ({
  ...snapshotBody(kase(), 'data', 'csi-snap'),
  metadata: { ...snapshotBody(kase(), 'data', 'csi-snap').metadata, uid },
  status,
});
const record = (r: Partial<VolumeSnapshotRecord>): VolumeSnapshotRecord => ({
  volume: 'disk',
  claim: 'data',
  phase: 'Pending',
  name: NAME,
  volumeSnapshotClass: 'csi-snap',
  driver: 'hostpath.amber.test',
  deletionPolicy: 'Retain',
  requestedAt: '2026-11-28T09:59:59.000Z',
  ...r,
});

const plan = (claims: ClaimWorld[], status: ForensicCaseStatus = {}, extra = {}) =>
  planSnapshots(kase(), status, { claims, beyondCap: [], ...extra }, NOW);
const records = (actions: SnapshotAction[]) =>
  (actions.find((a) => a.kind === 'volumeSnapshots') as { records: VolumeSnapshotRecord[] }).records;
const kinds = (actions: SnapshotAction[]) =>
  actions.map((a) => (a.kind === 'record' ? `record:${a.outcome}` : a.kind));

describe('snapshotName', () => {
  it('is deterministic, a DNS subdomain, and distinct where a plain join would collide', () => {
    expect(snapshotName('c1', 'u', 'data')).toBe(snapshotName('c1', 'u', 'data'));
    expect(snapshotName('c1', 'u', 'data')).toMatch(/^c1-[0-9a-f]{10}$/);
    expect(snapshotName('a-b', 'u', 'c')).not.toBe(snapshotName('a', 'u', 'b-c'));
    expect(snapshotName('x'.repeat(63), 'u', 'y'.repeat(253)).length).toBeLessThanOrEqual(253);
  });
  it('attack: cannot be known before the case exists (its UID is hashed in), so nobody takes it in advance', () => {
    expect(snapshotName('c1', 'uid-1', 'data')).not.toBe(snapshotName('c1', 'uid-2', 'data'));
  });
});

describe('podClaims', () => {
  it('takes claims and generic ephemeral volumes in spec order, each claim once', () => {
    const pod: V1Pod = {
      metadata: { name: 'web-0' },
      spec: {
        containers: [],
        volumes: [
          { name: 'a', persistentVolumeClaim: { claimName: 'data' } },
          { name: 'tmp', emptyDir: {} },
          { name: 'scratch', ephemeral: { volumeClaimTemplate: { spec: {} } } },
          { name: 'again', persistentVolumeClaim: { claimName: 'data' } },
        ],
      },
    };
    expect(podClaims(pod)).toEqual([
      { volume: 'a', claim: 'data', ephemeral: false },
      { volume: 'scratch', claim: 'web-0-scratch', ephemeral: true },
    ]);
  });
});

describe('podClaims: names the pod spec does not check', () => {
  it.each([['a%b'], ['..'], ['UPPER'], ['x'.repeat(254)]])(
    '%s is recorded as invalid, cut, never read',
    (name) => {
      const pod: V1Pod = {
        metadata: { name: 'web-0' },
        spec: { containers: [], volumes: [{ name: 'v', persistentVolumeClaim: { claimName: name } }] },
      };
      const [c] = podClaims(pod);
      expect(c!.invalid).toMatch(/not a valid claim name/);
      expect(c!.claim.length).toBeLessThanOrEqual(200);
    },
  );
});

describe('chooseClass', () => {
  const c = (
    name: string,
    driver: string,
    isDefault = false,
    deletionPolicy = 'Delete',
  ): VolumeSnapshotClass => ({
    metadata: { name, ...(isDefault && { annotations: { [DEFAULT_CLASS_ANNOTATION]: 'true' } }) },
    driver,
    deletionPolicy,
  });
  it.each([
    { classes: [c('one', 'd')], want: { name: 'one', deletionPolicy: 'Delete' } },
    { classes: [c('a', 'd'), c('b', 'd', true)], want: { name: 'b', deletionPolicy: 'Delete' } },
    { classes: [c('a', 'other')], want: 'no VolumeSnapshotClass for driver d' },
    { classes: [c('a', 'd'), c('b', 'd')], want: /2 VolumeSnapshotClasses for driver d and none marked/ },
    { classes: [c('a', 'd', true), c('b', 'd', true)], want: /several marked/ },
  ])('$classes.length classes → $want', ({ classes, want }) => {
    const got = chooseClass(classes, 'd');
    if (want instanceof RegExp) expect(got).toMatch(want);
    else expect(got).toEqual(want);
  });
});

describe('planSnapshots', () => {
  it('asks for a snapshot of a snapshottable claim, labelled and annotated for the case, no ownerReference', () => {
    const actions = plan([claim()]);
    expect(kinds(actions)).toEqual(['volumeSnapshots', 'createSnapshot', 'record:Succeeded']);
    const create = actions.find((a) => a.kind === 'createSnapshot')!;
    expect(create).toMatchObject({
      namespace: 'shop',
      claim: 'data',
      body: {
        metadata: {
          name: NAME,
          namespace: 'shop',
          labels: { [CASE_LABEL]: 'c1' },
          annotations: { [CASE_UID_ANNOTATION]: CASE_UID, [CLAIM_ANNOTATION]: 'data' },
        },
        spec: { source: { persistentVolumeClaimName: 'data' }, volumeSnapshotClassName: 'csi-snap' },
      },
    });
    expect((create as { body: { metadata: object } }).body.metadata).not.toHaveProperty('ownerReferences');
    expect(records(actions)).toEqual([record({ requestedAt: NOW, message: 'asked for' })]);
  });

  it('records a ready snapshot with its handle, size and time from the content that points back at it', () => {
    const s = ours({
      readyToUse: true,
      boundVolumeSnapshotContentName: 'snapcontent-1',
      restoreSize: '1Gi',
      creationTime: '2026-11-28T09:59:59Z',
    });
    const content = {
      spec: { volumeSnapshotRef: { name: NAME, uid: 'vs-uid' } },
      status: { snapshotHandle: 'h-1' },
    };
    const actions = plan([claim({ snapshot: s, content })], { volumeSnapshots: [record({ uid: 'vs-uid' })] });
    expect(records(actions)).toEqual([
      record({
        uid: 'vs-uid',
        phase: 'Ready',
        contentName: 'snapcontent-1',
        snapshotHandle: 'h-1',
        restoreSize: '1Gi',
        creationTime: '2026-11-28T09:59:59Z',
      }),
    ]);
    expect(kinds(actions)).toEqual(['volumeSnapshots', 'record:Succeeded']);
  });

  it('attack: a content that does not point back at the snapshot does not give it a handle', () => {
    const s = ours({ readyToUse: true, boundVolumeSnapshotContentName: 'forged' });
    const content = {
      spec: { volumeSnapshotRef: { name: NAME, uid: 'someone-else' } },
      status: { snapshotHandle: 'old' },
    };
    const [r] = records(
      plan([claim({ snapshot: s, content })], { volumeSnapshots: [record({ uid: 'vs-uid' })] }),
    );
    expect(r!.snapshotHandle).toBeUndefined();
  });

  it('adopts its own snapshot found after a crash between the create and the status write', () => {
    const actions = plan([claim({ snapshot: ours() })]);
    expect(kinds(actions)).toEqual(['volumeSnapshots']);
    expect(records(actions)[0]).toMatchObject({ phase: 'Pending', uid: 'vs-uid' });
  });

  it.each([
    ['another case UID', { metadata: { annotations: { [CASE_UID_ANNOTATION]: 'other' } } }],
    [
      'another claim',
      { spec: { source: { persistentVolumeClaimName: 'other' }, volumeSnapshotClassName: 'csi-snap' } },
    ],
    [
      'a hand-made content as its source',
      {
        spec: {
          source: { volumeSnapshotContentName: 'old', persistentVolumeClaimName: 'data' },
          volumeSnapshotClassName: 'csi-snap',
        },
      },
    ],
    [
      'another class',
      { spec: { source: { persistentVolumeClaimName: 'data' }, volumeSnapshotClassName: 'x' } },
    ],
  ])('attack: a snapshot under the name with %s is never adopted', (_what, change) => {
    const base = ours({ readyToUse: true });
    const s = {
      ...base,
      ...change,
      metadata: { ...base.metadata, ...(change as VolumeSnapshot).metadata },
    } as VolumeSnapshot;
    const actions = plan([claim({ snapshot: s })]);
    expect(kinds(actions)).toEqual(['volumeSnapshots', 'record:Failed']);
    expect(records(actions)[0]).toMatchObject({
      phase: 'Failed',
      message: expect.stringMatching(/did not take/),
    });
    expect(records(actions)[0]!.uid).toBeUndefined();
  });

  it('attack: its snapshot deleted (or replaced under the same name) before it was ready is recorded, never retaken', () => {
    const was = { volumeSnapshots: [record({ uid: 'vs-uid' })] };
    for (const snapshot of [undefined, ours({}, 'new-uid')]) {
      const actions = plan([claim({ snapshot })], was);
      expect(kinds(actions)).toEqual(['volumeSnapshots', 'record:Failed']);
      expect(records(actions)[0]).toMatchObject({ phase: 'Deleted', uid: 'vs-uid' });
    }
  });

  it('a driver error is retried by the snapshot controller: pending, with the error, until the timeout', () => {
    const s = ours({ readyToUse: false, error: { message: 'rate exceeded' } });
    const [soon] = records(plan([claim({ snapshot: s })], { volumeSnapshots: [record({ uid: 'vs-uid' })] }));
    expect(soon).toMatchObject({
      phase: 'Pending',
      message: 'retried by the snapshot controller: rate exceeded',
    });
  });

  it('a pending record past the timeout is kept as it is: not read again, never called deleted', () => {
    const old = record({ uid: 'vs-uid', requestedAt: '2026-11-28T09:49:59.000Z', message: 'waiting' }); // 601 s
    // The gather did not read it (needsGather is false): the world has the claim only.
    const actions = plan([{ volume: 'disk', claim: 'data' }], { volumeSnapshots: [old] });
    expect(actions).toEqual([{ kind: 'volumeSnapshots', records: [old] }]);
  });

  it('attack: its class switched after the create (only the source is immutable) is Failed, never Ready', () => {
    const base = ours({ readyToUse: true, boundVolumeSnapshotContentName: 'sc' });
    const s = { ...base, spec: { ...base.spec, volumeSnapshotClassName: 'deletes-on-delete' } };
    const [r] = records(plan([claim({ snapshot: s })], { volumeSnapshots: [record({ uid: 'vs-uid' })] }));
    expect(r).toMatchObject({
      phase: 'Failed',
      message: expect.stringMatching(/class was changed after Amber asked for csi-snap/),
    });
  });

  it('the deletion policy recorded is the one its content was made with', () => {
    const s = ours({ readyToUse: true, boundVolumeSnapshotContentName: 'sc' });
    const content = {
      spec: { deletionPolicy: 'Delete', volumeSnapshotRef: { name: NAME, uid: 'vs-uid' } },
      status: {},
    };
    const [r] = records(
      plan([claim({ snapshot: s, content })], { volumeSnapshots: [record({ uid: 'vs-uid' })] }),
    );
    expect(r).toMatchObject({ phase: 'Ready', deletionPolicy: 'Delete' });
  });

  it('a claim that could not be read this pass keeps its record, and says nothing', () => {
    const was = record({ uid: 'vs-uid' });
    expect(plan([claim({ readError: 'timeout' })], { volumeSnapshots: [was] })).toEqual([
      { kind: 'volumeSnapshots', records: [was] },
    ]);
    expect(plan([claim({ readError: 'timeout' })])).toEqual([]);
  });

  it('a deleted snapshot keeps what was seen of it (content, handle)', () => {
    const was = record({ uid: 'vs-uid', contentName: 'sc', snapshotHandle: 'h' });
    const [r] = records(plan([claim()], { volumeSnapshots: [was] }));
    expect(r).toMatchObject({ phase: 'Deleted', contentName: 'sc', snapshotHandle: 'h' });
  });

  it.each([
    ['the claim does not exist'],
    ['the claim is not bound (phase Pending)'],
    ['no VolumeSnapshotClass for driver d'],
    ['the ephemeral volume claim is not owned by the pod'],
  ])('skips a claim that cannot be snapshotted: %s, once', (problem) => {
    const actions = plan([claim({ problem, snapshotClass: undefined })]);
    expect(kinds(actions)).toEqual(['volumeSnapshots', 'record:Skipped']);
    expect(records(actions)[0]).toMatchObject({ phase: 'Skipped', message: problem });
    // The next pass does not read it again nor say it again.
    const again = plan([{ volume: 'disk', claim: 'data' }], { volumeSnapshots: records(actions) });
    expect(kinds(again)).toEqual(['volumeSnapshots']);
    expect(records(again)).toEqual(records(actions));
  });

  it('skips every claim when the snapshot API is not served', () => {
    const actions = plan([claim()], {}, { unavailable: 'not served' });
    expect(records(actions)[0]).toMatchObject({ phase: 'Skipped', message: 'not served' });
    expect(actions.some((a) => a.kind === 'createSnapshot')).toBe(false);
  });

  it('says which volumes are past the cap', () => {
    const actions = plan([claim()], {}, { beyondCap: ['v17', 'v18'] });
    expect(records(actions).at(-1)).toMatchObject({
      claim: '*',
      phase: 'Skipped',
      message: expect.stringContaining('v17, v18'),
    });
    const again = plan(
      [claim({ snapshot: ours() })],
      { volumeSnapshots: records(actions) },
      { beyondCap: ['v17', 'v18'] },
    );
    expect(records(again).filter((r) => r.claim === '*')).toHaveLength(1);
  });

  it('a pod without claims gets no record at all', () => {
    expect(plan([])).toEqual([]);
  });

  it('settled records are kept as they are', () => {
    const ready = record({ uid: 'vs-uid', phase: 'Ready', snapshotHandle: 'h' });
    const actions = plan([{ volume: 'disk', claim: 'data' }], { volumeSnapshots: [ready] });
    expect(actions).toEqual([{ kind: 'volumeSnapshots', records: [ready] }]);
  });
});

describe('wantsSnapshots and pendingSnapshots', () => {
  it('only for a pinned pod of a case that collects the group', () => {
    expect(wantsSnapshots(kase(), { podUID: 'p' })).toBe(true);
    expect(wantsSnapshots(kase(), {})).toBe(false);
    expect(wantsSnapshots(kase({ enabled: false }), { podUID: 'p' })).toBe(false);
    expect(wantsSnapshots(kase({ artifacts: ['processes'] }), { podUID: 'p' })).toBe(false);
  });
  it('a pending snapshot is waited for until the collection timeout', () => {
    const status = { volumeSnapshots: [record({ requestedAt: NOW })] };
    expect(pendingSnapshots(status, new Date(Date.parse(NOW) + 599_000), 600)).toEqual([NAME]);
    expect(pendingSnapshots(status, new Date(Date.parse(NOW) + 600_000), 600)).toEqual([]);
    expect(pendingSnapshots({ volumeSnapshots: [record({ phase: 'Ready' })] }, new Date(NOW), 600)).toEqual(
      [],
    );
  });
  it('a pending record past the timeout is not read again', () => {
    const status = { volumeSnapshots: [record({ requestedAt: NOW })] };
    expect(needsGather(status, 'data', new Date(Date.parse(NOW) + 599_000), 600)).toBe(true);
    expect(needsGather(status, 'data', new Date(Date.parse(NOW) + 600_000), 600)).toBe(false);
    expect(needsGather({ volumeSnapshots: [record({ phase: 'Ready' })] }, 'data', new Date(NOW), 600)).toBe(
      false,
    );
    expect(needsGather({}, 'data', new Date(NOW), 600)).toBe(true);
  });
});
