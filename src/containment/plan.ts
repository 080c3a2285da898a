import type { V1NetworkPolicy, V1Node, V1Pod } from '@kubernetes/client-node';
import type { Condition } from '../api/common.js';
import type { ConditionType, ForensicCase, ForensicCaseStatus, TimelineEntry } from '../api/forensiccase.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  ORIGINAL_LABELS_ANNOTATION,
  QUARANTINE_LABEL,
  STANDING_POLICY_NAME,
  networkPolicyName,
} from './labels.js';
import { decideNode, type NodeSlots } from './limits.js';
import {
  pinnedByPolicy,
  policyDrift,
  policyReplacement,
  standingQuarantinePolicy,
} from './network-policy.js';
import type { SnapshotAction, SnapshotWorld } from '../collection/volume-snapshots.js';
import { holders, nodePatch, type NodeContainment } from './node.js';
import { caseLabels, hasCaseLabels, isQuarantinedBy, originalLabels, quarantineLabels } from './pod.js';

/**
 * The case reconciler's decisions: what to do to the world and what to record, from the case,
 * its status and what was gathered this pass. Pure, so every rule is a row in a table test
 * (test/unit/containment/plan.test.ts); the reconciler gathers and applies (ADR 0010).
 */

/** Everything a pass read, and nothing else. */
export interface World {
  /** The pod spec.target names, as the API server has it now (any UID). */
  pod?: V1Pod;
  /** The namespace's standing quarantine NetworkPolicy as it is (ADR 0025). */
  standingPolicy?: V1NetworkPolicy;
  /**
   * The case's own quarantine NetworkPolicy, which Amber created before ADR 0025: it may carry
   * the pin, and goes on release. No longer created.
   */
  networkPolicy?: V1NetworkPolicy;
  /** Label keys binding the pod to its owner and Services; gathered before the first labelling. */
  detachKeys?: string[];
  /** When the pod's case label names another case: that case's pin, as the API server has it. */
  labelOwner?: { name: string; podUID?: string; open: boolean };
  /** Every node whose holder annotation lists this case, whatever the status says. */
  heldNodes: V1Node[];
  /** The node the case holds (status.node) or would hold (the pinned pod's spec.nodeName). */
  node?: V1Node;
  /** The cluster's count for a node decision, read under the decision lock; see needsNodeSlot. */
  slots?: NodeSlots;
  /** The pinned pod's claims and their snapshots, when the case wants them (planSnapshots). */
  snapshots?: SnapshotWorld;
}

export type Outcome = TimelineEntry['outcome'];

export type Action =
  | { kind: 'createPolicy'; policy: V1NetworkPolicy }
  | { kind: 'replacePolicy'; policy: V1NetworkPolicy }
  | { kind: 'deletePolicy'; namespace: string; name: string }
  /**
   * A merge patch guarded by the pod's UID and resourceVersion, so it lands on the pod that was
   * read or not at all.
   */
  | { kind: 'patchPod'; namespace: string; name: string; patch: object }
  | { kind: 'holdNode'; node: V1Node; want: NodeContainment }
  | { kind: 'releaseNode'; node: V1Node }
  /** Status fields about the pinned pod. */
  | { kind: 'pin'; podUID: string; pod?: V1Pod }
  | {
      kind: 'record';
      action: string;
      outcome: Outcome;
      message: string;
      event?: { type: 'Normal' | 'Warning'; reason?: string };
    }
  | { kind: 'condition'; type: ConditionType; status: Condition['status']; reason: string; message: string }
  | { kind: 'event'; type: 'Normal' | 'Warning'; reason: string; message: string }
  /** Contained becomes True: condition, containedAt, the time-to-contained metric, one summary Event. */
  | { kind: 'contained'; message: string }
  /** Volume snapshots (collection/volume-snapshots.ts): a create, and their records in status. */
  | Exclude<SnapshotAction, { kind: 'record' }>;

export const NO_NODE: NodeContainment = { cordon: false, taint: false, label: false };

export function nodeWanted(kase: ForensicCase): NodeContainment {
  const c = kase.spec.containment;
  return { cordon: c.cordonNode, taint: c.taintNode, label: c.labelNode };
}

const wantsNode = (w: NodeContainment) => w.cordon || w.taint || w.label;

/** A released case stays released, even if its spec were turned back (the CRD forbids that). */
export function releasing(kase: ForensicCase, status: ForensicCaseStatus): boolean {
  return (
    kase.spec.release ||
    kase.metadata.deletionTimestamp !== undefined ||
    status.conditions?.some((c) => c.type === 'Released' && c.status === 'True') === true
  );
}

/**
 * Whether this pass decides which node the case holds. The pod is isolated first (its status
 * written, its UID pinned); the node comes on the next pass, serialised with every other case's
 * decision and counted from the cluster (so two cases cannot both take the last slot).
 */
export function needsNodeSlot(kase: ForensicCase, status: ForensicCaseStatus): boolean {
  return (
    !releasing(kase, status) &&
    wantsNode(nodeWanted(kase)) &&
    status.podUID !== undefined &&
    !status.conditions?.some((c) => c.type === 'NodeHeld')
  );
}

export function plan(kase: ForensicCase, status: ForensicCaseStatus, world: World): Action[] {
  return releasing(kase, status) ? planRelease(kase, status, world) : planContain(kase, status, world);
}

// ---- helpers over the status as it was read ----

const condition = (s: ForensicCaseStatus, type: ConditionType) => s.conditions?.find((c) => c.type === type);
const isTrue = (s: ForensicCaseStatus, type: ConditionType) => condition(s, type)?.status === 'True';
const recorded = (s: ForensicCaseStatus, action: string, outcome: Outcome = 'Succeeded') =>
  s.timeline?.some((e) => e.action === action && e.outcome === outcome) ?? false;

const record = (
  action: string,
  outcome: Outcome,
  message: string,
  event?: { type: 'Normal' | 'Warning'; reason?: string },
): Action => ({ kind: 'record', action, outcome, message, ...(event ? { event } : {}) });

const setCondition = (
  type: ConditionType,
  status: Condition['status'],
  reason: string,
  message: string,
): Action => ({ kind: 'condition', type, status, reason, message });

/** The UID the case is pinned to: its status, or the policy it created first (a crash in between). */
export function pinnedUID(kase: ForensicCase, status: ForensicCaseStatus, world: World): string | undefined {
  return status.podUID ?? pinnedByPolicy(world.networkPolicy, kase.metadata.uid);
}

// ---- containment ----

function planContain(kase: ForensicCase, status: ForensicCaseStatus, world: World): Action[] {
  const out: Action[] = [];
  const name = kase.metadata.name;
  const { namespace, pod: podName } = kase.spec.target;
  const target = `${namespace}/${podName}`;
  const contained = isTrue(status, 'Contained');
  const pinned = pinnedUID(kase, status, world);
  const pod = world.pod;
  const impossible = (reason: string, message: string) => {
    if (contained) return;
    const c = condition(status, 'Contained');
    if (c?.status === 'False' && c.reason === reason) return;
    out.push(setCondition('Contained', 'False', reason, message));
    out.push(record('Contain', 'Failed', message, { type: 'Warning', reason }));
  };

  if (!pod && !pinned) {
    impossible('PodNotFound', `pod ${target} does not exist: containment is impossible`);
    releaseLeftovers(out, name, world, []);
    return out;
  }

  if (pinned && (!pod || pod.metadata?.uid !== pinned)) {
    // Same name, another pod (a StatefulSet's replacement) or none: never touched, only reported.
    const uid = pod?.metadata?.uid;
    const [reason, message] = pod
      ? [
          'PodReplaced',
          `pod ${target} is now UID ${uid}, not the pinned ${pinned}: the new pod is not touched`,
        ]
      : ['PodDeleted', `pod ${target} (UID ${pinned}) is gone`];
    const was = condition(status, 'PodReplaced');
    if (!(was?.status === 'True' && was.reason === reason && was.message === message)) {
      out.push(setCondition('PodReplaced', 'True', reason, message));
      out.push(record('PodReplaced', 'Skipped', message, { type: pod ? 'Warning' : 'Normal', reason }));
    }
    if (!status.podUID) out.push({ kind: 'pin', podUID: pinned });
    impossible('PodReplaced', `${message} before containment completed`);
    // The node the pod ran on stays held until release: root there may have deleted the pod
    // to get its node back into service.
    repairHeldNode(out, kase, status, world);
    releaseLeftovers(out, name, world, isTrue(status, 'NodeHeld') && status.node ? [status.node] : []);
    return out;
  }

  const uid = pod!.metadata!.uid!;
  const owner = world.labelOwner;
  if (owner && owner.name !== name && owner.open && owner.podUID === uid) {
    impossible('HeldByOtherCase', `pod ${target} is already held by case ${owner.name}`);
    return out;
  }
  // From here the pod is this case's: pinned to it, or pinned now. A case label naming another
  // case that did not pin this UID is the attacker's word, and is overwritten like any other.

  const isolatedOnce = status.podUID !== undefined;
  out.push({ kind: 'pin', podUID: uid, pod });
  if (!contained) {
    const c = condition(status, 'Contained');
    if (!(c?.status === 'False' && c.reason === 'InProgress'))
      out.push(setCondition('Contained', 'False', 'InProgress', 'containment in progress'));
  }
  const foundInPlace = (action: string, message: string) => {
    if (!isolatedOnce && !recorded(status, action))
      out.push(record(action, 'Succeeded', `${message} (found in place)`));
  };
  const repaired = (action: string, message: string, what: string) =>
    isolatedOnce
      ? record(action, 'Succeeded', `${message} (repaired: ${what})`, { type: 'Warning' })
      : record(action, 'Succeeded', message);

  // The network.
  const want = kase.spec.containment;
  if (want.isolateNetwork) {
    if (pod!.spec?.hostNetwork) {
      const message = `pod ${target} uses its node's network: a NetworkPolicy does not apply to it, so network isolation is not effective`;
      if (condition(status, 'NetworkIsolated')?.reason !== 'HostNetwork') {
        out.push(setCondition('NetworkIsolated', 'False', 'HostNetwork', message));
        out.push(
          record('IsolateNetwork', 'Failed', message, {
            type: 'Warning',
            reason: 'NetworkIsolationNotEffective',
          }),
        );
      }
    } else {
      // The namespace's standing policy isolates every pod carrying the label: it is put in place
      // (or back) before the label, so the label write isolates the pod the moment it lands.
      const wanted = standingQuarantinePolicy(namespace);
      const drift = policyDrift(world.standingPolicy, wanted);
      const message = `deny-all NetworkPolicy ${namespace}/${STANDING_POLICY_NAME} selects the pod by its label ${NETWORK_QUARANTINE_LABEL}`;
      if (drift === 'missing') {
        out.push({ kind: 'createPolicy', policy: wanted });
        out.push(repaired('IsolateNetwork', message, 'it was deleted'));
      } else if (drift === 'edited') {
        out.push({ kind: 'replacePolicy', policy: policyReplacement(world.standingPolicy!, wanted) });
        out.push(repaired('IsolateNetwork', message, 'it was edited'));
      } else if (!isolatedOnce && !recorded(status, 'IsolateNetwork'))
        out.push(record('IsolateNetwork', 'Succeeded', message));
      out.push(setCondition('NetworkIsolated', 'True', 'NetworkPolicy', message));
      // Connections opened before containment meet the policy only once the node forgets them,
      // and only the collection Job cuts them there (ADR 0021): without one, the case says so.
      if (!kase.spec.collection.enabled && !recorded(status, 'CutConnections', 'Skipped'))
        out.push(
          record(
            'CutConnections',
            'Skipped',
            'connections the pod held before containment stay open: only the collection Job cuts them on the node, and this case collects nothing (collection.enabled is false)',
            { type: 'Warning', reason: 'ConnectionsNotCut' },
          ),
        );
    }
  }

  // The pod's labels. The intake may have put them on already (ADR 0025): the first pass then
  // only detaches the pod from its workload.
  const network = want.isolateNetwork;
  const labels = pod!.metadata?.labels ?? {};
  const returned = want.detachFromWorkload
    ? Object.keys(originalLabels(pod!)).filter((k) => k in labels)
    : [];
  const labelled = hasCaseLabels(pod!, name, network);
  if (!isolatedOnce) {
    const keys = want.detachFromWorkload ? (world.detachKeys ?? []) : [];
    const p = quarantineLabels(pod!, name, keys, want.detachFromWorkload, network);
    const detached = Object.keys(p.removed);
    if (!labelled || detached.length) {
      const nulls = Object.fromEntries(detached.map((k) => [k, null]));
      out.push(
        podPatch(pod!, {
          labels: { ...nulls, ...caseLabels(name, network) },
          annotations: detached.length ? { [ORIGINAL_LABELS_ANNOTATION]: JSON.stringify(p.removed) } : {},
        }),
      );
      out.push(
        record(
          'LabelPod',
          'Succeeded',
          detached.length
            ? `${labelled ? 'pod' : 'pod labelled and'} detached from its workload (removed ${detached.join(', ')})`
            : 'pod labelled for quarantine',
        ),
      );
    } else foundInPlace('LabelPod', 'pod labelled for quarantine');
  } else if (!labelled || returned.length) {
    const what = [
      labels[CASE_LABEL] === undefined
        ? `label ${CASE_LABEL} was removed`
        : labels[CASE_LABEL] !== name
          ? `label ${CASE_LABEL} was changed to "${labels[CASE_LABEL]}"`
          : undefined,
      labels[QUARANTINE_LABEL] !== 'true' ? `label ${QUARANTINE_LABEL} was removed or changed` : undefined,
      network && labels[NETWORK_QUARANTINE_LABEL] !== name
        ? `label ${NETWORK_QUARANTINE_LABEL} was removed or changed`
        : undefined,
      returned.length ? `detached labels ${returned.join(', ')} were put back` : undefined,
    ]
      .filter(Boolean)
      .join('; ');
    out.push(
      podPatch(pod!, {
        labels: {
          ...Object.fromEntries(returned.map((k) => [k, null])),
          ...caseLabels(name, network),
        },
      }),
    );
    out.push(repaired('LabelPod', 'pod labelled for quarantine', what));
  }

  // The node.
  const nodeWant = nodeWanted(kase);
  const nodeHeld = condition(status, 'NodeHeld');
  let keep: string[] | undefined = [];
  let nodeDecided = true;
  if (!wantsNode(nodeWant)) keep = [];
  else if (nodeHeld?.status === 'True') {
    keep = status.node ? [status.node] : [];
    repairHeldNode(out, kase, status, world);
  } else if (nodeHeld) keep = [];
  else if (!world.slots) {
    // Decided on the next pass, under the decision lock; nothing is released meanwhile.
    keep = undefined;
    nodeDecided = false;
  } else {
    const nodeName = pod!.spec?.nodeName;
    const skip = (reason: string, message: string, warn: boolean) => {
      out.push(record('ContainNode', 'Skipped', message, warn ? { type: 'Warning', reason } : undefined));
      out.push(setCondition('NodeHeld', 'False', reason, message));
    };
    if (!nodeName) skip('NotScheduled', 'pod is not scheduled on a node', false);
    else if (!world.node || world.node.metadata?.name !== nodeName)
      skip('NodeGone', `node ${nodeName} is gone`, false);
    else {
      const decision = decideNode(nodeName, world.slots);
      if (!decision.take) skip('NodeLimitReached', decision.message, true);
      else {
        keep = [nodeName];
        const message = `node ${nodeName} cordoned/labelled/tainted (NoSchedule) as asked`;
        if (nodePatch(world.node, name, true, nodeWant)) {
          out.push({ kind: 'holdNode', node: world.node, want: nodeWant });
          out.push(record('ContainNode', 'Succeeded', message));
        } else if (!recorded(status, 'ContainNode')) {
          out.push(record('ContainNode', 'Succeeded', `${message} (found in place)`));
        }
        out.push(setCondition('NodeHeld', 'True', 'Held', decision.message));
      }
    }
  }
  if (keep) releaseLeftovers(out, name, world, keep);

  if (!contained && nodeDecided) {
    const notEffective = want.isolateNetwork && pod!.spec?.hostNetwork;
    out.push({
      kind: 'contained',
      message: `pod ${target} contained${notEffective ? ' (network isolation not effective: hostNetwork)' : ''}`,
    });
  }
  return out;
}

function podPatch(
  pod: V1Pod,
  metadata: { labels: Record<string, string | null>; annotations?: Record<string, string | null> },
): Action {
  return {
    kind: 'patchPod',
    namespace: pod.metadata!.namespace!,
    name: pod.metadata!.name!,
    patch: {
      metadata: { uid: pod.metadata?.uid, resourceVersion: pod.metadata?.resourceVersion, ...metadata },
    },
  };
}

/** A node the case holds that lost its cordon, taint, label or holder annotation gets them back. */
function repairHeldNode(out: Action[], kase: ForensicCase, status: ForensicCaseStatus, world: World): void {
  const want = nodeWanted(kase);
  if (!wantsNode(want) || !isTrue(status, 'NodeHeld') || !status.node) return;
  if (!world.node || world.node.metadata?.name !== status.node) return;
  if (!nodePatch(world.node, kase.metadata.name, true, want)) return;
  out.push({ kind: 'holdNode', node: world.node, want });
  out.push(
    record('ContainNode', 'Succeeded', `node ${status.node} cordoned/labelled/tainted again (repaired)`, {
      type: 'Warning',
    }),
  );
}

/**
 * A node that lists the case but is not one the case holds (a pass interrupted between the node
 * patch and the status write, a pod gone before its node was recorded) is let go of, so no node
 * stays held by a case that does not account for it.
 */
function releaseLeftovers(out: Action[], caseName: string, world: World, keep: string[]): void {
  for (const node of world.heldNodes) {
    const n = node.metadata!.name!;
    if (keep.includes(n) || !holders(node).includes(caseName)) continue;
    out.push({ kind: 'releaseNode', node });
    out.push(
      record('ReleaseNode', 'Succeeded', `case let go of node ${n}, which it held but did not account for`),
    );
  }
}

// ---- release ----

function planRelease(kase: ForensicCase, status: ForensicCaseStatus, world: World): Action[] {
  const out: Action[] = [];
  const name = kase.metadata.name;
  const { namespace, pod: podName } = kase.spec.target;
  const released = isTrue(status, 'Released');
  const nothingLeft = (action: string, message: string) => {
    if (!released && !recorded(status, action))
      out.push(record(action, 'Succeeded', `${message} (nothing left to do)`));
  };

  const policyName = networkPolicyName(name);
  if (world.networkPolicy) {
    out.push({ kind: 'deletePolicy', namespace, name: policyName });
    out.push(record('ReleaseNetwork', 'Succeeded', `NetworkPolicy ${namespace}/${policyName} removed`));
  } else nothingLeft('ReleaseNetwork', `NetworkPolicy ${namespace}/${policyName} removed`);

  const pinned = pinnedUID(kase, status, world);
  const pod = world.pod;
  if (pod && pinned && pod.metadata?.uid !== pinned) {
    if (!recorded(status, 'ReleasePod', 'Skipped'))
      out.push(
        record(
          'ReleasePod',
          'Skipped',
          `pod ${namespace}/${podName} is UID ${pod.metadata?.uid}, not the pinned ${pinned}: left untouched`,
        ),
      );
  } else if (
    pod &&
    (isQuarantinedBy(pod, name) || pod.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] === name)
  ) {
    const restore = kase.spec.containment.restoreLabelsOnRelease ? originalLabels(pod) : {};
    const restored = Object.keys(restore).length > 0;
    out.push(
      podPatch(pod, {
        labels: {
          [CASE_LABEL]: null,
          [QUARANTINE_LABEL]: null,
          [NETWORK_QUARANTINE_LABEL]: null,
          ...restore,
        },
        ...(restored ? { annotations: { [ORIGINAL_LABELS_ANNOTATION]: null } } : {}),
      }),
    );
    out.push(
      record(
        'ReleasePod',
        'Succeeded',
        restored ? 'quarantine labels removed, original labels restored' : 'quarantine labels removed',
      ),
    );
  } else nothingLeft('ReleasePod', 'quarantine labels removed');

  for (const node of world.heldNodes) {
    if (!holders(node).includes(name)) continue;
    out.push({ kind: 'releaseNode', node });
    out.push(record('ReleaseNode', 'Succeeded', `case let go of node ${node.metadata!.name}`));
  }

  if (!released) {
    out.push(setCondition('Released', 'True', 'Released', 'containment lifted; evidence untouched'));
    out.push({
      kind: 'event',
      type: 'Normal',
      reason: 'Released',
      message: 'containment lifted; evidence untouched',
    });
  }
  return out;
}
