import type { V1LabelSelector, V1Node, V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import { ForensicCase, type ForensicCaseStatus } from '../api/forensiccase.js';
import type { CollectionPipeline } from '../collection/pipeline.js';
import {
  CASE_LABEL,
  FINALIZER,
  ORIGINAL_LABELS_ANNOTATION,
  QUARANTINE_LABEL,
  networkPolicyName,
} from '../containment/labels.js';
import { quarantinePolicy } from '../containment/network-policy.js';
import { nodeMergePatch, nodePatch, type NodeContainment } from '../containment/node.js';
import {
  heldByOtherCase,
  isQuarantinedBy,
  originalLabels,
  quarantineLabels,
  selectorKeys,
  selectorMatches,
} from '../containment/pod.js';
import type { Logger } from '../observability/logger.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { isConflict, orNotFound } from '../runtime/errors.js';
import type { KubeClients } from './client.js';
import type { CaseEvents } from './events.js';
import type { CaseMetrics } from './metrics.js';
import { phaseOf } from './phase.js';
import { refusal, type SafetyConfig } from './safety.js';
import { StatusBuilder } from './status.js';

export interface CaseReconcilerDeps {
  clients: KubeClients;
  events: CaseEvents;
  metrics: CaseMetrics;
  safety: SafetyConfig;
  /** Collects and seals evidence once the pod is contained; without it a case stops at Contained. */
  collection?: CollectionPipeline;
  now?: () => Date;
  /** Whether the informer's cache holds this quarantine NetworkPolicy (saves a create per pass). */
  policyCached?: (namespace: string, name: string) => boolean;
  /**
   * Called after each change to the world, named by what was just done. Tests throw from it
   * to crash a pass half way and prove the next pass completes it exactly once.
   */
  afterStep?: (step: string, caseName: string) => void | Promise<void>;
}

type Case = ForensicCase;

const NODE_PATCH_ATTEMPTS = 10;

/**
 * Converges one ForensicCase: contain its pod and node, collect and seal its evidence, or
 * release them. Level-triggered:
 * each pass reads the case and the world afresh and does only what is missing, so a pass
 * that crashed half way is completed, never repeated.
 */
export class CaseReconciler {
  private readonly now: () => Date;

  constructor(private readonly deps: CaseReconcilerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async reconcile(name: string, log: Logger): Promise<ReconcileResult> {
    const raw = await orNotFound(this.deps.clients.getCase(name));
    if (!raw) return; // deleted: the finalizer already ran
    const generation = z.object({ metadata: z.object({ generation: z.number().default(0) }) }).parse(raw)
      .metadata.generation;
    const parsed = ForensicCase.safeParse(raw);
    if (!parsed.success) {
      const status = new StatusBuilder((raw as { status?: ForensicCaseStatus }).status, generation, this.now);
      await this.refuse(name, status, 'InvalidSpec', z.prettifyError(parsed.error), log);
      return;
    }
    const kase = parsed.data;
    const status = new StatusBuilder(kase.status, generation, this.now);
    const finalizers = kase.metadata.finalizers ?? [];

    if (kase.metadata.deletionTimestamp) {
      if (!finalizers.includes(FINALIZER)) return;
      await this.release(kase, status, log);
      await this.writeStatus(kase, status);
      await this.deps.clients.patchCase(name, {
        metadata: {
          resourceVersion: kase.metadata.resourceVersion,
          finalizers: finalizers.filter((f) => f !== FINALIZER),
        },
      });
      log.info('case deleted: containment released, finalizer removed');
      return;
    }

    const refused = refusal(kase, this.deps.safety);
    if (refused) {
      await this.refuse(name, status, refused.reason, refused.message, log, kase);
      return;
    }
    status.setCondition('Valid', 'True', 'SpecValid', 'the case spec is valid');

    if (!finalizers.includes(FINALIZER)) {
      // Before touching anything, so that deleting the case always releases what it holds.
      await this.deps.clients.patchCase(name, {
        metadata: { resourceVersion: kase.metadata.resourceVersion, finalizers: [...finalizers, FINALIZER] },
      });
      await this.step('finalizer', name);
    }

    let result: ReconcileResult = undefined;
    if (kase.spec.release) await this.release(kase, status, log);
    else {
      // Collection starts on the pass after the one that contained: Contained is written (and
      // seen) first, and the status update it makes brings the case back here.
      const wasContained = status.isTrue('Contained');
      await this.contain(kase, status, log);
      if (wasContained && this.deps.collection)
        result = await this.deps.collection.advance(kase, status, log, (s) => this.step(s, name));
    }
    await this.writeStatus(kase, status);
    return result;
  }

  private async contain(kase: Case, status: StatusBuilder, log: Logger): Promise<void> {
    const { clients, events } = this.deps;
    const name = kase.metadata.name;
    const { namespace, pod: podName } = kase.spec.target;
    const firstPass = !status.isTrue('Contained');
    const done = (action: string, performed: boolean, message: string) => {
      if (performed) {
        status.record(action, 'Succeeded', message);
        // The first pass is summed up by one Contained Event (fewer writes in an alert storm);
        // a later repair, e.g. a deleted NetworkPolicy put back, gets an Event of its own.
        if (!firstPass) void events.emit(kase.metadata, 'Normal', action, `${message} (repaired)`);
      } else if (firstPass && !status.recorded(action)) {
        // Done by a pass that crashed before writing status: record it once, now.
        status.record(action, 'Succeeded', `${message} (found in place)`);
      }
    };

    const pod = await orNotFound(clients.core.readNamespacedPod({ namespace, name: podName }));
    if (!pod) {
      if (firstPass)
        this.impossible(
          kase,
          status,
          'PodNotFound',
          `pod ${namespace}/${podName} does not exist: containment is impossible`,
        );
      return;
    }
    const holder = heldByOtherCase(pod, name);
    if (holder) {
      if (firstPass)
        this.impossible(
          kase,
          status,
          'HeldByOtherCase',
          `pod ${namespace}/${podName} is already held by case ${holder}`,
        );
      return;
    }
    if (firstPass) status.setCondition('Contained', 'False', 'InProgress', 'containment in progress');
    recordPod(status.status, pod);

    const want = kase.spec.containment;
    if (want.isolateNetwork) {
      const created = await this.ensureNetworkPolicy(kase, namespace);
      await this.step('network-policy', name);
      done('IsolateNetwork', created, `deny-all NetworkPolicy ${namespace}/${networkPolicyName(name)}`);
    }
    if (!isQuarantinedBy(pod, name)) {
      const keys = want.detachFromWorkload ? await this.detachKeys(pod) : [];
      const plan = quarantineLabels(pod, name, keys, want.detachFromWorkload);
      const nulls = Object.fromEntries(Object.keys(plan.removed).map((k) => [k, null]));
      await clients.patchPod(namespace, podName, {
        metadata: {
          resourceVersion: pod.metadata?.resourceVersion,
          labels: { ...nulls, ...plan.labels },
          annotations: Object.keys(plan.removed).length
            ? { [ORIGINAL_LABELS_ANNOTATION]: JSON.stringify(plan.removed) }
            : {},
        },
      });
      await this.step('pod-labels', name);
      const detached = Object.keys(plan.removed);
      done(
        'LabelPod',
        true,
        detached.length
          ? `pod labelled and detached from its workload (removed ${detached.join(', ')})`
          : 'pod labelled for quarantine',
      );
    } else {
      done('LabelPod', false, 'pod labelled for quarantine');
    }

    const nodeWanted: NodeContainment = {
      cordon: want.cordonNode,
      taint: want.taintNode,
      label: want.labelNode,
    };
    if (nodeWanted.cordon || nodeWanted.taint || nodeWanted.label) {
      const nodeName = pod.spec?.nodeName;
      const node = nodeName ? await orNotFound(clients.core.readNode({ name: nodeName })) : undefined;
      if (!node) {
        if (firstPass && !status.status.timeline?.some((e) => e.action === 'ContainNode'))
          status.record(
            'ContainNode',
            'Skipped',
            nodeName ? `node ${nodeName} is gone` : 'pod is not scheduled on a node',
          );
      } else {
        const performed = await this.holdNode(node, name, true, nodeWanted);
        await this.step('node', name);
        done('ContainNode', performed, `node ${nodeName} cordoned/labelled/tainted (NoSchedule) as asked`);
      }
    }

    if (firstPass) {
      status.setCondition('Contained', 'True', 'Contained', `pod ${namespace}/${podName} contained`);
      status.status.containedAt = status.timestamp();
      const created = kase.metadata.creationTimestamp ? Date.parse(kase.metadata.creationTimestamp) : NaN;
      if (!Number.isNaN(created))
        this.deps.metrics.timeToContained.observe(Math.max(0, (this.now().getTime() - created) / 1000));
      const steps = (status.status.timeline ?? [])
        .filter((e) => e.outcome === 'Succeeded')
        .map((e) => e.action);
      void events.emit(
        kase.metadata,
        'Normal',
        'Contained',
        `pod ${namespace}/${podName} contained: ${steps.join(', ')}`,
      );
      log.info({ node: pod.spec?.nodeName }, 'pod contained');
    }
  }

  private async release(kase: Case, status: StatusBuilder, log: Logger): Promise<void> {
    const { clients, events } = this.deps;
    const name = kase.metadata.name;
    const { namespace, pod: podName } = kase.spec.target;
    const firstPass = !status.isTrue('Released');
    const done = (action: string, performed: boolean, message: string) => {
      if (performed) status.record(action, 'Succeeded', message);
      else if (firstPass && !status.recorded(action))
        status.record(action, 'Succeeded', `${message} (nothing left to do)`);
    };

    const deleted = await orNotFound(
      clients.networking
        .deleteNamespacedNetworkPolicy({ namespace, name: networkPolicyName(name) })
        .then(() => true),
    );
    done('ReleaseNetwork', deleted === true, `NetworkPolicy ${namespace}/${networkPolicyName(name)} removed`);

    const pod = await orNotFound(clients.core.readNamespacedPod({ namespace, name: podName }));
    if (pod && isQuarantinedBy(pod, name)) {
      const restore = kase.spec.containment.restoreLabelsOnRelease ? originalLabels(pod) : {};
      await clients.patchPod(namespace, podName, {
        metadata: {
          resourceVersion: pod.metadata?.resourceVersion,
          labels: { [CASE_LABEL]: null, [QUARANTINE_LABEL]: null, ...restore },
          ...(Object.keys(restore).length ? { annotations: { [ORIGINAL_LABELS_ANNOTATION]: null } } : {}),
        },
      });
      done(
        'ReleasePod',
        true,
        Object.keys(restore).length
          ? 'quarantine labels removed, original labels restored'
          : 'quarantine labels removed',
      );
    } else done('ReleasePod', false, 'quarantine labels removed');

    const nodeName = status.status.node;
    const node = nodeName ? await orNotFound(clients.core.readNode({ name: nodeName })) : undefined;
    if (node) {
      const performed = await this.holdNode(node, name, false, { cordon: false, taint: false, label: false });
      done('ReleaseNode', performed, `case let go of node ${nodeName}`);
    }

    if (firstPass) {
      status.setCondition('Released', 'True', 'Released', 'containment lifted; evidence untouched');
      void events.emit(kase.metadata, 'Normal', 'Released', 'containment lifted; evidence untouched');
      log.info('containment released');
    }
  }

  private async step(name: string, caseName: string): Promise<void> {
    await this.deps.afterStep?.(name, caseName);
  }

  /**
   * Many cases can hold one node at once (an alert storm on its pods). Their patches are
   * guarded by the node's resourceVersion; on a conflict, read the node again and retry here
   * rather than requeue the whole case, so a busy node does not slow containment down.
   */
  private async holdNode(
    node: V1Node,
    caseName: string,
    hold: boolean,
    want: NodeContainment,
  ): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const change = nodePatch(node, caseName, hold, want);
      if (!change) return false;
      try {
        await this.deps.clients.patchNode(node.metadata!.name!, nodeMergePatch(node, change));
        return true;
      } catch (err) {
        if (!isConflict(err) || attempt >= NODE_PATCH_ATTEMPTS) throw err;
        node = await this.deps.clients.core.readNode({ name: node.metadata!.name! });
      }
    }
  }

  private async ensureNetworkPolicy(kase: Case, namespace: string): Promise<boolean> {
    const policy = quarantinePolicy({ name: kase.metadata.name, uid: kase.metadata.uid ?? '' }, namespace);
    if (this.deps.policyCached?.(namespace, policy.metadata!.name!)) return false;
    try {
      await this.deps.clients.networking.createNamespacedNetworkPolicy({ namespace, body: policy });
      return true;
    } catch (err) {
      if (isConflict(err)) return false; // AlreadyExists: a previous pass made it
      throw err;
    }
  }

  /** Label keys that bind the pod to its controller and to the Services that select it. */
  private async detachKeys(pod: V1Pod): Promise<string[]> {
    const { clients } = this.deps;
    const namespace = pod.metadata!.namespace!;
    const labels = pod.metadata?.labels ?? {};
    const keys = new Set<string>();
    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
    if (owner) {
      const read: Record<string, (() => Promise<{ spec?: { selector?: V1LabelSelector } }>) | undefined> = {
        ReplicaSet: () => clients.apps.readNamespacedReplicaSet({ namespace, name: owner.name }),
        StatefulSet: () => clients.apps.readNamespacedStatefulSet({ namespace, name: owner.name }),
        DaemonSet: () => clients.apps.readNamespacedDaemonSet({ namespace, name: owner.name }),
        Job: () => clients.batch.readNamespacedJob({ namespace, name: owner.name }),
      };
      const fetchOwner = read[owner.kind];
      const workload = fetchOwner ? await orNotFound(fetchOwner()) : undefined;
      for (const k of selectorKeys(workload?.spec?.selector)) keys.add(k);
    }
    const services = await clients.core.listNamespacedService({ namespace });
    for (const svc of services.items) {
      if (selectorMatches(svc.spec?.selector, labels))
        for (const k of selectorKeys(svc.spec?.selector)) keys.add(k);
    }
    return [...keys];
  }

  private impossible(kase: Case, status: StatusBuilder, reason: string, message: string): void {
    status.setCondition('Contained', 'False', reason, message);
    if (!status.status.timeline?.some((e) => e.action === 'Contain' && e.outcome === 'Failed'))
      status.record('Contain', 'Failed', message);
    void this.deps.events.emit(kase.metadata, 'Warning', reason, message);
  }

  private async refuse(
    name: string,
    status: StatusBuilder,
    reason: string,
    message: string,
    log: Logger,
    kase?: Case,
  ) {
    const already = status.condition('Valid');
    status.setCondition('Valid', 'False', reason, message);
    if (!(already?.status === 'False' && already.reason === reason)) {
      status.record('Validate', 'Failed', message);
      if (kase) void this.deps.events.emit(kase.metadata, 'Warning', reason, message);
      log.warn({ reason, message }, 'case refused');
    }
    status.status.phase = phaseOf(status.status.conditions);
    const finished = status.finish();
    if (status.changed) await this.deps.clients.patchCaseStatus(name, { status: finished });
  }

  private async writeStatus(kase: Case, status: StatusBuilder): Promise<void> {
    status.status.phase = phaseOf(status.status.conditions);
    const finished = status.finish();
    if (!status.changed) return;
    // Only the fields this controller owns: status.alerts belongs to the intake, which
    // merge-patches it concurrently, so no resourceVersion precondition is needed here.
    const { alerts: _alerts, ...owned } = finished;
    await this.deps.clients.patchCaseStatus(kase.metadata.name, { status: owned });
  }
}

function recordPod(status: ForensicCaseStatus, pod: V1Pod): void {
  if (pod.spec?.nodeName) status.node = pod.spec.nodeName;
  if (pod.metadata?.uid) status.podUID = pod.metadata.uid;
  const all = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
    ...(pod.status?.ephemeralContainerStatuses ?? []),
  ];
  const containers = all
    .filter((c) => c.containerID)
    .map((c) => {
      const [runtime, id] = c.containerID!.split('://') as [string, string];
      return {
        name: c.name,
        id: id ?? runtime,
        runtime: id ? runtime : 'unknown',
        ...(c.imageID && { imageID: c.imageID }),
      };
    });
  if (containers.length) status.containers = containers;
}
