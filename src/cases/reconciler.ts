import type { V1LabelSelector, V1NetworkPolicy, V1Node, V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import { ForensicCase, type ForensicCaseStatus } from '../api/forensiccase.js';
import { PolicyLimits } from '../api/responsepolicy.js';
import type { CollectionPipeline } from '../collection/pipeline.js';
import {
  CASE_LABEL,
  FINALIZER,
  NODE_HELD_LABEL,
  STANDING_POLICY_NAME,
  networkPolicyName,
} from '../containment/labels.js';
import {
  DEFAULT_NODE_LIMIT,
  nodesHeldByCases,
  type CaseHold,
  type NodeLimit,
  type NodeSlots,
} from '../containment/limits.js';
import { holders, nodeMergePatch, nodePatch, type NodeContainment } from '../containment/node.js';
import {
  NO_NODE,
  needsNodeSlot,
  nodeWanted,
  pinnedUID,
  plan,
  releasing,
  type Action,
  type World,
} from '../containment/plan.js';
import { selectorKeys, selectorMatches } from '../containment/pod.js';
import {
  createSnapshot,
  gatherSnapshots,
  pendingSnapshots,
  planSnapshots,
  wantsSnapshots,
} from '../collection/volume-snapshots.js';
import type { Logger } from '../observability/logger.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { apiStatusCode, isConflict, orNotFound } from '../runtime/errors.js';
import type { KubeClients } from './client.js';
import type { CaseEvents } from './events.js';
import type { CaseMetrics } from './metrics.js';
import { phaseOf, phaseReasonOf } from './phase.js';
import { refusal, type SafetyConfig } from './safety.js';
import { StatusBuilder } from './status.js';

/** The operator's own node limit (each ResponsePolicy may set a tighter one). */
export interface GlobalNodeLimit {
  maxNodes: number;
  maxPercent: number;
}

export interface CaseReconcilerDeps {
  clients: KubeClients;
  events: CaseEvents;
  metrics: CaseMetrics;
  safety: SafetyConfig;
  nodeLimit?: GlobalNodeLimit;
  /** Collects and seals evidence once the pod is contained; without it a case stops at Contained. */
  collection?: CollectionPipeline;
  now?: () => Date;
  /** The informer's copy of a quarantine NetworkPolicy; its watch brings the case back on any change. */
  cachedPolicy?: (namespace: string, name: string) => V1NetworkPolicy | undefined;
  /**
   * Called after each change to the world, named by what was just done. Tests throw from it
   * to crash a pass half way and prove the next pass completes it exactly once.
   */
  afterStep?: (step: string, caseName: string) => void | Promise<void>;
}

type Case = ForensicCase;

const NODE_PATCH_ATTEMPTS = 10;

const STEP: Partial<Record<Action['kind'], string>> = {
  createPolicy: 'network-policy',
  replacePolicy: 'network-policy',
  patchPod: 'pod-labels',
  holdNode: 'node',
  releaseNode: 'release-node',
  createSnapshot: 'volume-snapshot',
};

/** How often a pending volume snapshot is looked at again (within the collection's timeout). */
const SNAPSHOT_POLL_MS = 2000;

/**
 * Converges one ForensicCase: contain its pod and node, collect and seal its evidence, or
 * release them. Each pass is gather → plan → apply: read the case and the world afresh, decide
 * (containment/plan.ts, pure) and act, so a pass that crashed half way is completed, never
 * repeated (ADR 0010).
 */
export class CaseReconciler {
  private readonly now: () => Date;
  private readonly nodeLimit: GlobalNodeLimit;
  /** Serialises node decisions: only the leader reconciles, so this is cluster-wide. */
  private nodeDecisions: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: CaseReconcilerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.nodeLimit = deps.nodeLimit ?? DEFAULT_NODE_LIMIT;
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
      await this.pass(kase, status, log);
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
    return this.pass(kase, status, log);
  }

  /** One gather → plan → apply; a pass that decides a node holds the decision lock throughout. */
  private async pass(kase: Case, status: StatusBuilder, log: Logger): Promise<ReconcileResult> {
    const run = async (slots: boolean) => {
      // Collection starts on the pass after the one that contained: Contained is written (and
      // seen) first, and the status update it makes brings the case back here.
      const wasContained = status.isTrue('Contained') && !releasing(kase, status.status);
      const world = await this.gather(kase, status.status, slots);
      const actions = plan(kase, status.status, world);
      // After containment's own actions: isolating the pod comes first.
      if (world.snapshots)
        actions.push(...planSnapshots(kase, status.status, world.snapshots, status.timestamp()));
      await this.apply(kase, status, actions, log);
      let result: ReconcileResult = undefined;
      // Never under the decision lock: the NodeHeld condition it writes brings the case back.
      if (wasContained && this.deps.collection && !slots)
        result = await this.deps.collection.advance(kase, status, log, (s) =>
          this.step(s, kase.metadata.name),
        );
      await this.writeStatus(kase, status);
      const pending = pendingSnapshots(status.status, this.now(), kase.spec.collection.timeoutSeconds);
      if (pending.length && !result) result = { requeueAfterMs: SNAPSHOT_POLL_MS };
      return result;
    };
    if (!needsNodeSlot(kase, status.status)) return run(false);
    const decided = this.nodeDecisions.then(() => run(true));
    this.nodeDecisions = decided.catch(() => undefined);
    return decided;
  }

  // ---- gather: every read, no writes ----

  private async gather(kase: Case, status: ForensicCaseStatus, slots: boolean): Promise<World> {
    const { clients } = this.deps;
    const name = kase.metadata.name;
    const { namespace, pod: podName } = kase.spec.target;
    const releasingNow = releasing(kase, status);
    const [pod, standingPolicy, networkPolicy, held] = await Promise.all([
      orNotFound(clients.core.readNamespacedPod({ namespace, name: podName })),
      releasingNow || !kase.spec.containment.isolateNetwork
        ? undefined
        : this.readPolicy(namespace, STANDING_POLICY_NAME),
      // An earlier version's per-case policy: it pins the pod until the status does, and goes
      // on release. None is created any more, so once the informer synced its cache is the truth.
      status.podUID && !releasingNow
        ? undefined
        : this.deps.cachedPolicy
          ? this.deps.cachedPolicy(namespace, networkPolicyName(name))
          : this.readPolicy(namespace, networkPolicyName(name)),
      this.heldNodes(status.node, name),
    ]);
    const world: World = {
      pod,
      standingPolicy,
      networkPolicy,
      heldNodes: held.filter((n) => holders(n).includes(name)),
    };
    if (releasingNow) return world;
    const want = nodeWanted(kase);
    const wantsNode = want.cordon || want.taint || want.label;
    const nodeHeld = status.conditions?.find((c) => c.type === 'NodeHeld');
    const pinned = pinnedUID(kase, status, world);
    if (!pod || (pinned && pod.metadata?.uid !== pinned)) {
      // The pinned pod is gone, but the node it ran on stays held (and is repaired) until release.
      if (wantsNode && nodeHeld?.status === 'True' && status.node)
        world.node =
          held.find((n) => n.metadata?.name === status.node) ??
          (await orNotFound(clients.core.readNode({ name: status.node })));
      return world;
    }

    const label = pod.metadata?.labels?.[CASE_LABEL];
    if (label && label !== name) world.labelOwner = await this.labelOwner(label);
    // Also when the intake labelled the pod already: detaching is the first pass's to do.
    if (!status.podUID && kase.spec.containment.detachFromWorkload)
      world.detachKeys = await this.detachKeys(pod);

    if (wantsNode) {
      const nodeName = nodeHeld?.status === 'True' ? status.node : pod.spec?.nodeName;
      if (nodeName && (slots || nodeHeld?.status === 'True'))
        world.node =
          held.find((n) => n.metadata?.name === nodeName) ??
          (await orNotFound(clients.core.readNode({ name: nodeName })));
    }
    if (slots) world.slots = await this.slots(kase, held);
    // Not on the pass that decides the node: it holds the cluster-wide decision lock.
    if (!slots && pinned === pod.metadata?.uid && wantsSnapshots(kase, status))
      world.snapshots = await gatherSnapshots(clients, kase, status, pod, this.now());
    return world;
  }

  /**
   * The cached policy when the informer has it (its watch brings the case back on any change),
   * else the API server's answer: a cache that has not seen the create yet must not cause another.
   */
  private async readPolicy(namespace: string, name: string): Promise<V1NetworkPolicy | undefined> {
    const cached = this.deps.cachedPolicy?.(namespace, name);
    if (cached) return cached;
    return orNotFound(this.deps.clients.networking.readNamespacedNetworkPolicy({ namespace, name }));
  }

  /**
   * Every node some case holds, read from the API server (not a cache: a decision must see the
   * previous decision's patch), plus the node the status names in case its held label is gone.
   */
  private async heldNodes(statusNode: string | undefined, caseName: string): Promise<V1Node[]> {
    const { clients } = this.deps;
    const list = await clients.core.listNode({ labelSelector: NODE_HELD_LABEL });
    const nodes = list.items.filter((n) => holders(n).length > 0);
    if (statusNode && !nodes.some((n) => n.metadata?.name === statusNode)) {
      const node = await orNotFound(clients.core.readNode({ name: statusNode }));
      if (node && holders(node).includes(caseName)) nodes.push(node);
    }
    return nodes;
  }

  private async slots(kase: Case, held: V1Node[]): Promise<NodeSlots> {
    const limits: NodeLimit[] = [
      {
        source: 'the operator configuration',
        maxNodes: this.nodeLimit.maxNodes,
        maxPercent: this.nodeLimit.maxPercent,
      },
    ];
    const ref = kase.spec.policyRef;
    if (ref) {
      const policy = await orNotFound(this.deps.clients.getResponsePolicy(ref));
      if (policy) {
        // An invalid policy's limits fall back to the schema's defaults, never to none.
        const raw = (policy as { spec?: { limits?: unknown } }).spec?.limits ?? {};
        const parsed = PolicyLimits.safeParse(raw);
        const l = parsed.success ? parsed.data : PolicyLimits.parse({});
        limits.push({
          source: `policy ${ref}`,
          maxNodes: l.maxCordonedNodes,
          maxPercent: l.maxCordonedNodesPercent,
        });
      }
    }
    const [clusterNodes, cases] = await Promise.all([
      this.deps.clients.countNodes(),
      this.deps.clients.listCases(),
    ]);
    const byCases = nodesHeldByCases(cases as CaseHold[]);
    return {
      heldNodes: [...new Set([...held.map((n) => n.metadata!.name!), ...byCases])],
      clusterNodes,
      limits,
    };
  }

  /** The case a pod's label names, with the UID it pinned: a label alone proves nothing. */
  private async labelOwner(name: string): Promise<World['labelOwner']> {
    const raw = await orNotFound(this.deps.clients.getCase(name));
    const other = ForensicCase.safeParse(raw);
    if (!raw || !other.success) return { name, open: false };
    return {
      name,
      podUID: other.data.status?.podUID,
      open: !releasing(other.data, other.data.status ?? {}),
    };
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

  // ---- apply: every write, in the planned order ----

  private async apply(kase: Case, status: StatusBuilder, actions: Action[], log: Logger): Promise<void> {
    const { clients } = this.deps;
    const name = kase.metadata.name;
    for (const a of actions) {
      switch (a.kind) {
        case 'createPolicy':
          // A 409 (the intake or another case created the standing policy first, or someone put
          // a policy of that name there) requeues the case: the next pass reads what is there
          // and replaces it if it is not the wanted one, before counting the pod isolated.
          await clients.networking.createNamespacedNetworkPolicy({
            namespace: a.policy.metadata!.namespace!,
            body: a.policy,
          });
          break;
        case 'replacePolicy':
          await clients.networking.replaceNamespacedNetworkPolicy({
            namespace: a.policy.metadata!.namespace!,
            name: a.policy.metadata!.name!,
            body: a.policy,
          });
          break;
        case 'deletePolicy':
          await orNotFound(
            clients.networking.deleteNamespacedNetworkPolicy({ namespace: a.namespace, name: a.name }),
          );
          break;
        case 'patchPod':
          await clients.patchPod(a.namespace, a.name, a.patch);
          break;
        case 'holdNode':
          await this.patchNode(a.node, name, true, a.want);
          break;
        case 'releaseNode':
          await this.patchNode(a.node, name, false, NO_NODE);
          break;
        case 'pin':
          status.status.podUID = a.podUID;
          if (a.pod) recordPod(status.status, a.pod);
          break;
        case 'record':
          status.record(a.action, a.outcome, a.message, a.event);
          break;
        case 'condition':
          status.setCondition(a.type, a.status, a.reason, a.message);
          if (a.type === 'Released') log.info('containment released');
          break;
        case 'event':
          status.event(a.type, a.reason, a.message);
          break;
        case 'createSnapshot': {
          const { made, refused } = await createSnapshot(clients, a);
          const r = status.status.volumeSnapshots?.find((x) => x.claim === a.claim);
          const snapshot = a.body.metadata?.name;
          if (refused) {
            const message = `the API server refused VolumeSnapshot ${snapshot}: ${refused}`;
            if (r) Object.assign(r, { phase: 'Failed', message: message.slice(0, 1024) });
            status.record('SnapshotVolume', 'Failed', message, {
              type: 'Warning',
              reason: 'SnapshotRefused',
            });
            log.warn({ claim: a.claim, snapshot, refused }, 'volume snapshot refused');
          } else {
            if (r && made?.metadata?.uid) r.uid = made.metadata.uid;
            log.info({ claim: a.claim, snapshot }, 'volume snapshot asked for');
          }
          break;
        }
        case 'volumeSnapshots':
          status.status.volumeSnapshots = a.records;
          break;
        case 'contained': {
          status.setCondition('Contained', 'True', 'Contained', a.message);
          status.status.containedAt = status.timestamp();
          const created = kase.metadata.creationTimestamp ? Date.parse(kase.metadata.creationTimestamp) : NaN;
          if (!Number.isNaN(created))
            this.deps.metrics.timeToContained.observe(Math.max(0, (this.now().getTime() - created) / 1000));
          // The first containment is summed up by one Event (fewer writes in an alert storm);
          // later repairs ask for Events of their own.
          const steps = (status.status.timeline ?? [])
            .filter((e) => e.outcome === 'Succeeded')
            .map((e) => e.action);
          status.event('Normal', 'Contained', `${a.message}: ${steps.join(', ')}`);
          log.info({ node: status.status.node }, 'pod contained');
          break;
        }
      }
      const step = STEP[a.kind];
      if (step) await this.step(step, name);
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
  private async patchNode(
    node: V1Node,
    caseName: string,
    hold: boolean,
    want: NodeContainment,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const change = nodePatch(node, caseName, hold, want);
      if (!change) return;
      try {
        await this.deps.clients.patchNode(node.metadata!.name!, nodeMergePatch(node, change));
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= NODE_PATCH_ATTEMPTS) throw err;
        const fresh = await orNotFound(this.deps.clients.core.readNode({ name: node.metadata!.name! }));
        if (!fresh) return; // the node is gone, and with it what the case held
        node = fresh;
      }
    }
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
      status.record('Validate', 'Failed', message, kase ? { type: 'Warning', reason } : undefined);
      log.warn({ reason, message }, 'case refused');
    }
    await this.writeStatus(kase ?? { metadata: { name } }, status, true);
  }

  /** Writes status if it changed, then sends the Events that tell the same story. */
  private async writeStatus(
    kase: Pick<Case, 'metadata'>,
    status: StatusBuilder,
    whole = false,
  ): Promise<void> {
    status.status.phase = phaseOf(status.status.conditions);
    // Always a string: a merge patch cannot leave a stale reason behind.
    const why = phaseReasonOf(status.status.conditions);
    status.status.reason = why.reason;
    status.status.message = why.message;
    const finished = status.finish();
    if (status.changed) {
      // Only the fields this controller owns: status.alerts belongs to the intake, which
      // merge-patches it concurrently, so no resourceVersion precondition is needed here.
      const { alerts: _alerts, ...owned } = finished;
      try {
        await this.deps.clients.patchCaseStatus(kase.metadata.name, { status: whole ? finished : owned });
      } catch (err) {
        // No answer, or a server error (an etcd timeout): the status may well be written, and
        // then the next pass finds the condition already set and says nothing. Send the Events
        // now; at worst they are said twice.
        const code = apiStatusCode(err);
        if (code === undefined || code >= 500) this.sendEvents(kase, status);
        throw err;
      }
    }
    this.sendEvents(kase, status);
  }

  private sendEvents(kase: Pick<Case, 'metadata'>, status: StatusBuilder): void {
    for (const e of status.events.splice(0))
      void this.deps.events.emit(kase.metadata, e.type, e.reason, e.message);
  }
}

function recordPod(status: ForensicCaseStatus, pod: V1Pod): void {
  if (pod.spec?.nodeName) status.node = pod.spec.nodeName;
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
