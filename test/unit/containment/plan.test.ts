import type { V1NetworkPolicy, V1Node, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ForensicCase, type ForensicCaseStatus } from '../../../src/api/forensiccase.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  NODE_HELD_LABEL,
  NODE_HOLDERS_ANNOTATION,
  ORIGINAL_LABELS_ANNOTATION,
  POD_UID_ANNOTATION,
  QUARANTINE_LABEL,
  QUARANTINE_TAINT_KEY,
} from '../../../src/containment/labels.js';
import type { NodeSlots } from '../../../src/containment/limits.js';
import { quarantinePolicy, standingQuarantinePolicy } from '../../../src/containment/network-policy.js';
import { needsNodeSlot, plan, type Action, type World } from '../../../src/containment/plan.js';

const CASE_UID = 'case-uid';
const T = '2026-11-28T00:00:00.000Z';

function kase(spec: Record<string, unknown> = {}, status?: ForensicCaseStatus): ForensicCase {
  return ForensicCase.parse({
    apiVersion: 'forensics.amber.io/v1alpha1',
    kind: 'ForensicCase',
    metadata: { name: 'c1', uid: CASE_UID, generation: 1 },
    spec: { target: { namespace: 'shop', pod: 'web-0' }, reason: 'test', ...spec },
    ...(status ? { status } : {}),
  });
}

function pod(
  uid: string,
  opts: { labels?: Record<string, string>; node?: string; hostNetwork?: boolean } = {},
) {
  return {
    metadata: {
      name: 'web-0',
      namespace: 'shop',
      uid,
      resourceVersion: `rv-${uid}`,
      labels: opts.labels ?? { app: 'web' },
    },
    spec: { nodeName: opts.node ?? 'node-a', containers: [], hostNetwork: opts.hostNetwork },
  } satisfies V1Pod;
}

const quarantined = (uid: string, extra: Record<string, string> = {}, node = 'node-a') =>
  pod(uid, {
    labels: { [CASE_LABEL]: 'c1', [QUARANTINE_LABEL]: 'true', [NETWORK_QUARANTINE_LABEL]: 'c1', ...extra },
    node,
  });

function node(name: string, holders: string[] = [], cordoned = holders.length > 0): V1Node {
  return {
    metadata: {
      name,
      resourceVersion: '1',
      annotations: holders.length ? { [NODE_HOLDERS_ANNOTATION]: holders.join(',') } : {},
      labels: holders.length ? { [NODE_HELD_LABEL]: 'true', [QUARANTINE_LABEL]: 'true' } : {},
    },
    spec: cordoned
      ? { unschedulable: true, taints: [{ key: QUARANTINE_TAINT_KEY, value: 'true', effect: 'NoSchedule' }] }
      : {},
  };
}

/** The namespace's standing policy as the API server returns it: empty rule lists dropped. */
function standing(edit?: (p: V1NetworkPolicy) => void): V1NetworkPolicy {
  const p = structuredClone(standingQuarantinePolicy('shop'));
  delete p.spec!.ingress;
  delete p.spec!.egress;
  p.metadata!.resourceVersion = '7';
  edit?.(p);
  return p;
}

/** An earlier version's per-case policy as the API server returns it: it carries the pin. */
function policy(podUID: string, edit?: (p: V1NetworkPolicy) => void): V1NetworkPolicy {
  const p = structuredClone(quarantinePolicy({ name: 'c1', uid: CASE_UID }, 'shop', podUID));
  delete p.spec!.ingress;
  delete p.spec!.egress;
  p.metadata!.resourceVersion = '5';
  edit?.(p);
  return p;
}

const cond = (type: string, status: string, reason: string) => ({
  type,
  status: status as 'True',
  reason,
  message: reason,
  lastTransitionTime: T,
});
const entry = (action: string, outcome: 'Succeeded' | 'Failed' | 'Skipped' = 'Succeeded') => ({
  time: T,
  action,
  outcome,
});

/** Status after the first pass: pod isolated and pinned, node not decided yet. */
const isolated = (uid = 'u1'): ForensicCaseStatus => ({
  podUID: uid,
  node: 'node-a',
  conditions: [cond('Valid', 'True', 'SpecValid'), cond('Contained', 'False', 'InProgress')],
  timeline: [entry('IsolateNetwork'), entry('LabelPod')],
});
/** Status of a contained case holding node-a. */
const contained = (uid = 'u1'): ForensicCaseStatus => ({
  podUID: uid,
  node: 'node-a',
  conditions: [
    cond('Valid', 'True', 'SpecValid'),
    cond('Contained', 'True', 'Contained'),
    cond('NodeHeld', 'True', 'Held'),
  ],
  timeline: [entry('IsolateNetwork'), entry('LabelPod'), entry('ContainNode')],
});

const slots = (heldNodes: string[], clusterNodes = 8, max = 1, percent = 100): NodeSlots => ({
  heldNodes,
  clusterNodes,
  limits: [{ source: 'the operator configuration', maxNodes: max, maxPercent: percent }],
});

const world = (w: Partial<World>): World => ({ heldNodes: [], standingPolicy: standing(), ...w });

const kinds = (actions: Action[]) => actions.map((a) => a.kind);
const writes = (actions: Action[]) =>
  actions
    .filter((a) =>
      ['createPolicy', 'replacePolicy', 'deletePolicy', 'patchPod', 'holdNode', 'releaseNode'].includes(
        a.kind,
      ),
    )
    .map((a) => {
      switch (a.kind) {
        case 'patchPod':
          return `patchPod ${a.name}@${(a.patch as { metadata: { resourceVersion: string } }).metadata.resourceVersion}`;
        case 'holdNode':
        case 'releaseNode':
          return `${a.kind} ${a.node.metadata!.name}`;
        default:
          return a.kind;
      }
    });
const records = (actions: Action[]) =>
  actions.flatMap((a) =>
    a.kind === 'record' ? [`${a.action} ${a.outcome}${a.event ? ` +${a.event.type}Event` : ''}`] : [],
  );
const conditions = (actions: Action[]) =>
  actions.flatMap((a) => (a.kind === 'condition' ? [`${a.type}=${a.status}/${a.reason}`] : []));

interface Row {
  name: string;
  spec?: Record<string, unknown>;
  status?: ForensicCaseStatus;
  world: World;
  writes: string[];
  records?: string[];
  conditions?: string[];
  contained?: boolean;
}

const rows: Row[] = [
  // ---- the first pass: isolate, pin; the node is decided on the next pass ----
  {
    name: 'first pass: the standing policy in place, so one label write (with detach) isolates; node deferred to the decision pass',
    world: world({ pod: pod('u1'), detachKeys: ['app'] }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['IsolateNetwork Succeeded', 'LabelPod Succeeded'],
    conditions: ['Contained=False/InProgress', 'NetworkIsolated=True/NetworkPolicy'],
    contained: false,
  },
  {
    name: 'first pass in a namespace without the standing policy: the policy first, then the label',
    world: world({ pod: pod('u1'), standingPolicy: undefined }),
    writes: ['createPolicy', 'patchPod web-0@rv-u1'],
    records: ['IsolateNetwork Succeeded', 'LabelPod Succeeded'],
  },
  {
    name: 'first pass without node containment: contained at once',
    spec: { containment: { cordonNode: false, taintNode: false, labelNode: false } },
    world: world({ pod: pod('u1') }),
    writes: ['patchPod web-0@rv-u1'],
    contained: true,
  },
  {
    name: 'the intake isolated the pod already: the first pass only detaches it',
    world: world({ pod: quarantined('u1', { app: 'web' }), detachKeys: ['app'] }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['IsolateNetwork Succeeded', 'LabelPod Succeeded'],
  },
  {
    name: 'the intake isolated the pod already, no detach asked: nothing written, found in place',
    spec: { containment: { detachFromWorkload: false } },
    world: world({ pod: quarantined('u1', { app: 'web' }), detachKeys: ['app'] }),
    writes: [],
    records: ['IsolateNetwork Succeeded', 'LabelPod Succeeded'],
  },
  {
    name: 'a first pass with the case label but not the network label (put on by hand): labelled fully',
    world: world({ pod: pod('u1', { labels: { [CASE_LABEL]: 'c1', [QUARANTINE_LABEL]: 'true' } }) }),
    writes: ['patchPod web-0@rv-u1'],
  },
  {
    name: 'isolateNetwork off: no policy, no network label',
    spec: { containment: { isolateNetwork: false, cordonNode: false, taintNode: false, labelNode: false } },
    world: world({ pod: pod('u1'), standingPolicy: undefined }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['LabelPod Succeeded'],
    conditions: ['Contained=False/InProgress'],
  },
  {
    name: 'crash after the labels, before status: all found in place, nothing written twice',
    world: world({ pod: quarantined('u1') }),
    writes: [],
    records: ['IsolateNetwork Succeeded', 'LabelPod Succeeded'],
  },
  // ---- the node decision (under the lock, from the cluster's count) ----
  {
    name: 'decision pass, within the limit: the pod’s own node is held',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a'),
      slots: slots([]),
    }),
    writes: ['holdNode node-a'],
    records: ['ContainNode Succeeded'],
    conditions: ['NetworkIsolated=True/NetworkPolicy', 'NodeHeld=True/Held'],
    contained: true,
  },
  {
    name: 'past the limit (another node held): contained without the node, and says so',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a'),
      slots: slots(['node-x']),
    }),
    writes: [],
    records: ['ContainNode Skipped +WarningEvent'],
    conditions: ['NetworkIsolated=True/NetworkPolicy', 'NodeHeld=False/NodeLimitReached'],
    contained: true,
  },
  {
    name: 'joining a node Amber already holds costs nothing, even at the limit',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a', ['other']),
      slots: slots(['node-a']),
    }),
    writes: ['holdNode node-a'],
    conditions: ['NetworkIsolated=True/NetworkPolicy', 'NodeHeld=True/Held'],
  },
  {
    name: 'percentage limit: 10% of 20 nodes is 2, one held → a second may be taken',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a'),
      slots: slots(['node-x'], 20, 100, 10),
    }),
    writes: ['holdNode node-a'],
  },
  {
    name: 'the policy’s own limit is tighter than the operator’s',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a'),
      slots: {
        heldNodes: ['node-x'],
        clusterNodes: 100,
        limits: [
          { source: 'the operator configuration', maxNodes: 10, maxPercent: 50 },
          { source: 'policy shells', maxNodes: 1, maxPercent: 50 },
        ],
      },
    }),
    writes: [],
    conditions: ['NetworkIsolated=True/NetworkPolicy', 'NodeHeld=False/NodeLimitReached'],
  },
  {
    name: 'crash after the node patch, before status: found in place, recorded once',
    status: isolated(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
      slots: slots(['node-a']),
    }),
    writes: [],
    records: ['ContainNode Succeeded'],
    contained: true,
  },
  {
    name: 'the node is gone: skipped, still contained',
    status: isolated(),
    world: world({ pod: quarantined('u1'), networkPolicy: policy('u1'), slots: slots([]) }),
    writes: [],
    records: ['ContainNode Skipped'],
    conditions: ['NetworkIsolated=True/NetworkPolicy', 'NodeHeld=False/NodeGone'],
    contained: true,
  },
  // ---- pinned to the pod's UID ----
  {
    name: 'same-name replacement on another node: nothing touched, reported',
    status: contained('u1'),
    world: world({
      pod: pod('u2', { node: 'node-b' }),
      networkPolicy: policy('u1'),
      node: node('node-b'),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: [],
    records: ['PodReplaced Skipped +WarningEvent'],
    conditions: ['PodReplaced=True/PodReplaced'],
  },
  {
    name: 'the pinned pod deleted, then root strips its node: the hold is put back',
    status: contained('u1'),
    world: world({ networkPolicy: policy('u1'), node: node('node-a') }),
    writes: ['holdNode node-a'],
    records: ['PodReplaced Skipped +NormalEvent', 'ContainNode Succeeded +WarningEvent'],
    conditions: ['PodReplaced=True/PodDeleted'],
  },
  {
    name: 'replaced on another node, and the old node stripped: the old node is held again, the new one untouched',
    status: contained('u1'),
    world: world({ pod: pod('u2', { node: 'node-b' }), networkPolicy: policy('u1'), node: node('node-a') }),
    writes: ['holdNode node-a'],
    records: ['PodReplaced Skipped +WarningEvent', 'ContainNode Succeeded +WarningEvent'],
  },
  {
    name: 'replacement carrying this case’s label (the attacker copied it): still not touched',
    status: contained('u1'),
    world: world({ pod: quarantined('u2', {}, 'node-b'), networkPolicy: policy('u1') }),
    writes: [],
  },
  {
    name: 'crash after the node patch, then the pod deleted: the node is let go of',
    status: isolated(),
    world: world({
      networkPolicy: policy('u1'),
      heldNodes: [node('node-a', ['c1', 'other'])],
    }),
    writes: ['releaseNode node-a'],
    records: ['PodReplaced Skipped +NormalEvent', 'Contain Failed +WarningEvent', 'ReleaseNode Succeeded'],
  },
  {
    name: 'a crash before status wrote the pin: the policy’s pod UID still pins the case',
    world: world({ pod: pod('u2', { node: 'node-b' }), networkPolicy: policy('u1') }),
    writes: [],
    conditions: ['PodReplaced=True/PodReplaced', 'Contained=False/PodReplaced'],
  },
  {
    name: 'no pod and nothing pinned: impossible, and any node listing the case let go of',
    world: world({ heldNodes: [node('node-a', ['c1'])] }),
    writes: ['releaseNode node-a'],
    conditions: ['Contained=False/PodNotFound'],
  },
  // ---- labels: trusted only with the UID ----
  {
    name: 'another case that pinned this very pod holds it: refused, nothing written',
    world: world({
      pod: pod('u1', { labels: { [CASE_LABEL]: 'other' } }),
      labelOwner: { name: 'other', podUID: 'u1', open: true },
    }),
    writes: [],
    conditions: ['Contained=False/HeldByOtherCase'],
  },
  {
    name: 'a label naming a case that pinned another pod is the attacker’s word: contained anyway',
    world: world({
      pod: pod('u1', { labels: { app: 'web', [CASE_LABEL]: 'other' } }),
      labelOwner: { name: 'other', podUID: 'u9', open: true },
      detachKeys: ['app'],
    }),
    writes: ['patchPod web-0@rv-u1'],
  },
  {
    name: 'label changed to another case after containment: put back, Event',
    status: contained(),
    world: world({
      pod: quarantined('u1', { [CASE_LABEL]: 'other' }),
      networkPolicy: policy('u1'),
      labelOwner: { name: 'other', podUID: 'u9', open: true },
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['LabelPod Succeeded +WarningEvent'],
  },
  {
    name: 'label removed after containment: put back, Event',
    status: contained(),
    world: world({
      pod: pod('u1', { labels: { [QUARANTINE_LABEL]: 'true' } }),
      networkPolicy: policy('u1'),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['LabelPod Succeeded +WarningEvent'],
  },
  {
    name: 'a detached label put back on (to rejoin the Service): taken off again',
    status: contained(),
    world: world({
      pod: {
        ...quarantined('u1', { app: 'web' }),
        metadata: {
          ...quarantined('u1', { app: 'web' }).metadata,
          annotations: { [ORIGINAL_LABELS_ANNOTATION]: '{"app":"web"}' },
        },
      },
      networkPolicy: policy('u1'),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['LabelPod Succeeded +WarningEvent'],
  },
  {
    name: 'the network label removed after containment (the one the standing policy selects): put back, Event',
    status: contained(),
    world: world({
      pod: pod('u1', { labels: { [CASE_LABEL]: 'c1', [QUARANTINE_LABEL]: 'true' } }),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['LabelPod Succeeded +WarningEvent'],
  },
  {
    name: 'the network label changed to another value: put back (the policy selects any value; the label names the case)',
    status: contained(),
    world: world({
      pod: quarantined('u1', { [NETWORK_QUARANTINE_LABEL]: 'x' }),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['patchPod web-0@rv-u1'],
  },
  // ---- the standing NetworkPolicy ----
  {
    name: 'standing policy deleted after containment: created again, Event',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: undefined,
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['createPolicy'],
    records: ['IsolateNetwork Succeeded +WarningEvent'],
    conditions: ['NetworkIsolated=True/NetworkPolicy'],
  },
  {
    name: 'standing policy edited to allow all ingress: replaced, Event',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: standing((p) => (p.spec!.ingress = [{}])),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['replacePolicy'],
    records: ['IsolateNetwork Succeeded +WarningEvent'],
  },
  {
    name: 'standing policy selector edited to select nothing: replaced',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: standing((p) => (p.spec!.podSelector = { matchLabels: { [CASE_LABEL]: 'nobody' } })),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['replacePolicy'],
  },
  {
    name: 'standing policy made Ingress-only: replaced',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: standing((p) => (p.spec!.policyTypes = ['Ingress'])),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['replacePolicy'],
  },
  {
    name: 'standing policy given an owner (the garbage collector would delete it with that owner): replaced',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: standing(
        (p) =>
          (p.metadata!.ownerReferences = [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'gone' }]),
      ),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['replacePolicy'],
  },
  {
    name: 'standing policy with labels and annotations others added: left alone',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      standingPolicy: standing((p) => {
        p.metadata!.labels = { ...p.metadata!.labels, team: 'sec' };
        p.metadata!.annotations = { note: 'x' };
      }),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: [],
  },
  {
    name: 'steady state: nothing to do, nothing recorded',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a', ['c1']),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: [],
    records: [],
  },
  {
    name: 'node uncordoned by hand while held: cordoned again, Event',
    status: contained(),
    world: world({
      pod: quarantined('u1'),
      networkPolicy: policy('u1'),
      node: node('node-a', ['c1'], false),
      heldNodes: [node('node-a', ['c1'], false)],
    }),
    writes: ['holdNode node-a'],
    records: ['ContainNode Succeeded +WarningEvent'],
  },
  {
    name: 'hostNetwork pod: no policy, isolation recorded as not effective, never Succeeded',
    spec: { containment: { cordonNode: false, taintNode: false, labelNode: false } },
    world: world({ pod: pod('u1', { hostNetwork: true }), detachKeys: [], standingPolicy: undefined }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['IsolateNetwork Failed +WarningEvent', 'LabelPod Succeeded'],
    conditions: ['Contained=False/InProgress', 'NetworkIsolated=False/HostNetwork'],
    contained: true,
  },
  // ---- release ----
  {
    name: 'release after a replacement: the old node is let go of, the new pod untouched',
    spec: { release: true },
    status: {
      ...contained('u1'),
      conditions: [...contained('u1').conditions!, cond('PodReplaced', 'True', 'PodReplaced')],
    },
    world: world({
      pod: pod('u2', { node: 'node-b' }),
      networkPolicy: policy('u1'),
      heldNodes: [node('node-a', ['c1'])],
    }),
    writes: ['deletePolicy', 'releaseNode node-a'],
    records: ['ReleaseNetwork Succeeded', 'ReleasePod Skipped', 'ReleaseNode Succeeded'],
    conditions: ['Released=True/Released'],
  },
  {
    name: 'release undoes every node listing the case, whatever status says',
    spec: { release: true },
    status: contained('u1'),
    world: world({
      pod: quarantined('u1'),
      heldNodes: [node('node-a', ['c1']), node('node-z', ['c1', 'other'])],
    }),
    writes: ['patchPod web-0@rv-u1', 'releaseNode node-a', 'releaseNode node-z'],
  },
  {
    name: 'release when only the network label is left (the case label removed): it is taken off too',
    spec: { release: true },
    status: contained('u1'),
    world: world({ pod: pod('u1', { labels: { [NETWORK_QUARANTINE_LABEL]: 'c1' } }) }),
    writes: ['patchPod web-0@rv-u1'],
  },
  {
    name: 'release leaves the standing policy (it selects nobody once the labels are off)',
    spec: { release: true },
    status: contained('u1'),
    world: world({ pod: quarantined('u1') }),
    writes: ['patchPod web-0@rv-u1'],
    records: ['ReleaseNetwork Succeeded', 'ReleasePod Succeeded'],
  },
  {
    name: 'release set back to false (an API server without the CEL rule): stays released',
    spec: { release: false },
    status: {
      ...contained('u1'),
      conditions: [...contained('u1').conditions!, cond('Released', 'True', 'Released')],
    },
    world: world({ pod: pod('u1') }),
    writes: [],
    records: [],
  },
];

describe('plan', () => {
  it.each(rows)('$name', (row) => {
    const actions = plan(kase(row.spec, row.status), row.status ?? {}, row.world);
    expect(writes(actions)).toEqual(row.writes);
    if (row.records) expect(records(actions)).toEqual(row.records);
    if (row.conditions) expect(conditions(actions)).toEqual(row.conditions);
    if (row.contained !== undefined) expect(kinds(actions).includes('contained')).toBe(row.contained);
    // Whatever happens, a pod whose UID is not the pinned one is never written to.
    const pinned = row.status?.podUID;
    if (pinned && row.world.pod?.metadata?.uid !== pinned)
      expect(actions.some((a) => a.kind === 'patchPod')).toBe(false);
  });

  it('labels the pod it read (UID and resourceVersion preconditions), and records the UID and node', () => {
    const actions = plan(kase(), {}, world({ pod: pod('u1'), detachKeys: ['app'] }));
    expect(actions.find((a) => a.kind === 'pin')).toMatchObject({ podUID: 'u1' });
    const patch = actions.find((a) => a.kind === 'patchPod');
    expect(patch).toMatchObject({
      patch: {
        metadata: {
          uid: 'u1',
          resourceVersion: 'rv-u1',
          labels: {
            app: null,
            [CASE_LABEL]: 'c1',
            [QUARANTINE_LABEL]: 'true',
            [NETWORK_QUARANTINE_LABEL]: 'c1',
          },
          annotations: { [ORIGINAL_LABELS_ANNOTATION]: '{"app":"web"}' },
        },
      },
    });
  });

  it('after the intake labelled the pod, the first pass writes only the detach', () => {
    const actions = plan(kase(), {}, world({ pod: quarantined('u1', { app: 'web' }), detachKeys: ['app'] }));
    const patch = actions.find((a) => a.kind === 'patchPod');
    expect(patch).toMatchObject({
      patch: {
        metadata: {
          uid: 'u1',
          labels: { app: null },
          annotations: { [ORIGINAL_LABELS_ANNOTATION]: '{"app":"web"}' },
        },
      },
    });
    expect(actions.find((a) => a.kind === 'record' && a.action === 'LabelPod')).toMatchObject({
      message: 'pod detached from its workload (removed app)',
    });
  });

  it('a case that collects nothing says the connections held before containment stay open, once', () => {
    const spec = { collection: { enabled: false } };
    const cut = (a: Action) => a.kind === 'record' && a.action === 'CutConnections';
    const first = plan(kase(spec), {}, world({ pod: pod('u1') }));
    expect(first.find(cut)).toMatchObject({
      outcome: 'Skipped',
      event: { type: 'Warning', reason: 'ConnectionsNotCut' },
    });
    const again = {
      podUID: 'u1',
      timeline: [{ time: T, action: 'CutConnections', outcome: 'Skipped' as const }],
    };
    expect(plan(kase(spec, again), again, world({ pod: quarantined('u1') })).some(cut)).toBe(false);
    // With collection, the Job cuts them: nothing to say here.
    expect(plan(kase(), {}, world({ pod: pod('u1') })).some(cut)).toBe(false);
    // A hostNetwork pod is not isolated at all, which its own record says.
    expect(plan(kase(spec), {}, world({ pod: pod('u1', { hostNetwork: true }) })).some(cut)).toBe(false);
  });

  it('an earlier version’s per-case policy still pins the case before the status does', () => {
    const legacy = policy('u1');
    expect(legacy.metadata?.annotations?.[POD_UID_ANNOTATION]).toBe('u1');
    const actions = plan(kase(), {}, world({ pod: pod('u2'), networkPolicy: legacy }));
    expect(actions.some((a) => a.kind === 'patchPod')).toBe(false);
  });

  it('says how far past the limit a case is', () => {
    const actions = plan(
      kase(),
      isolated(),
      world({
        pod: quarantined('u1'),
        networkPolicy: policy('u1'),
        node: node('node-a'),
        slots: slots(['node-x']),
      }),
    );
    const skipped = actions.find((a) => a.kind === 'record' && a.action === 'ContainNode');
    expect(skipped).toMatchObject({
      outcome: 'Skipped',
      message: expect.stringMatching(/node limit reached: Amber holds 1 of 8 nodes .* allows 1/),
      event: { type: 'Warning', reason: 'NodeLimitReached' },
    });
  });
});

describe('needsNodeSlot: which passes decide a node (under the lock)', () => {
  it.each([
    ['first pass (nothing pinned yet)', {}, {}, false],
    ['pod isolated, node undecided', {}, isolated(), true],
    ['node decided', {}, contained(), false],
    [
      'no node containment asked',
      { containment: { cordonNode: false, taintNode: false, labelNode: false } },
      isolated(),
      false,
    ],
    ['releasing', { release: true }, isolated(), false],
  ] as const)('%s → %s', (_name, spec, status, expected) => {
    expect(needsNodeSlot(kase(spec, status as ForensicCaseStatus), status as ForensicCaseStatus)).toBe(
      expected,
    );
  });
});
