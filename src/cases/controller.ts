import type { KubeConfig, KubernetesObject, V1NetworkPolicy, V1Node, V1Pod } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { API_VERSION } from '../api/common.js';
import { FORENSIC_CASE, type ForensicCase } from '../api/forensiccase.js';
import { CollectionConfig, type CollectionConfigInput } from '../collection/config.js';
import { MANAGED_BY } from '../collection/job.js';
import { CollectionPipeline } from '../collection/pipeline.js';
import { CASE_LABEL, NODE_HELD_LABEL } from '../containment/labels.js';
import { MANAGED_BY_LABEL, isStandingPolicy } from '../containment/network-policy.js';
import { holders } from '../containment/node.js';
import type { Logger } from '../observability/logger.js';
import { Controller, ownerKeys } from '../runtime/controller.js';
import { Informer, apiListWatch } from '../runtime/informer.js';
import type { WorkQueueOptions } from '../runtime/workqueue.js';
import { KubeClients } from './client.js';
import { CaseEvents } from './events.js';
import { caseMetrics } from './metrics.js';
import { CaseReconciler, type GlobalNodeLimit } from './reconciler.js';
import type { SafetyConfig } from './safety.js';

export interface CaseControllerOptions {
  kc: KubeConfig;
  logger: Logger;
  registry: Registry;
  safety: SafetyConfig;
  /** The operator's node limit (ADR 0010); each ResponsePolicy may set a tighter one. */
  nodeLimit?: GlobalNodeLimit;
  workers?: number;
  resyncMs?: number;
  queue?: WorkQueueOptions;
  /** Collect and seal evidence after containment (ADR 0006); without it cases stop at Contained. */
  collection?: CollectionConfigInput;
  /** Whether this replica leads: only the leader exports amber_cases. */
  isLeader?: () => boolean;
  /** See CaseReconcilerDeps.afterStep (tests only). */
  afterStep?: (step: string, caseName: string) => void | Promise<void>;
}

/**
 * The case controller: ForensicCases, the NetworkPolicies and collection Jobs they own and the
 * pods they quarantine feed one queue of case names; each name is reconciled by CaseReconciler.
 */
export function caseController(opts: CaseControllerOptions) {
  const clients = new KubeClients(opts.kc);
  const cases = new Informer<ForensicCase & KubernetesObject>(
    apiListWatch(opts.kc, `/apis/${API_VERSION}/${FORENSIC_CASE.plural}`),
    {
      logger: opts.logger.child({ informer: 'forensiccases' }),
      resyncMs: opts.resyncMs ?? 5 * 60_000,
    },
  );
  const policies = new Informer<V1NetworkPolicy & KubernetesObject>(
    apiListWatch(opts.kc, '/apis/networking.k8s.io/v1/networkpolicies', {
      labelSelector: Object.entries(MANAGED_BY_LABEL)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    }),
    { logger: opts.logger.child({ informer: 'networkpolicies' }) },
  );
  // Quarantined pods: a label removed or changed brings the case back within the watch's latency
  // rather than at the next resync. A pod that loses the label leaves the selector, and the
  // watch reports it as deleted, with the labels it had.
  const pods = new Informer<V1Pod & KubernetesObject>(
    apiListWatch(opts.kc, '/api/v1/pods', { labelSelector: CASE_LABEL }),
    { logger: opts.logger.child({ informer: 'quarantined-pods' }) },
  );
  // Held nodes: root on a node can uncordon it and strip Amber's label and annotation; every
  // case that says it holds the node comes back and puts the hold back (a node that loses the
  // label leaves the selector, and the watch reports it as deleted, with what it had).
  const nodes = new Informer<V1Node & KubernetesObject>(
    apiListWatch(opts.kc, '/api/v1/nodes', { labelSelector: NODE_HELD_LABEL }),
    { logger: opts.logger.child({ informer: 'held-nodes' }) },
  );
  const events = new CaseEvents(clients.core, opts.logger);
  const collectionConfig = opts.collection ? CollectionConfig.parse(opts.collection) : undefined;
  const collection = collectionConfig
    ? new CollectionPipeline({
        clients,
        events,
        config: collectionConfig,
        registry: opts.registry,
        logger: opts.logger,
      })
    : undefined;
  // A finished collection Job brings its case back at once, instead of at the next poll.
  const jobs =
    collectionConfig?.mode === 'job'
      ? new Informer(
          apiListWatch(opts.kc, `/apis/batch/v1/namespaces/${collectionConfig.namespace}/jobs`, {
            labelSelector: Object.entries(MANAGED_BY)
              .map(([k, v]) => `${k}=${v}`)
              .join(','),
          }),
          { logger: opts.logger.child({ informer: 'jobs' }) },
        )
      : undefined;
  const reconciler = new CaseReconciler({
    clients,
    events,
    collection,
    metrics: caseMetrics(opts.registry, () => cases.list().map((c) => c.status?.phase), opts.isLeader),
    safety: opts.safety,
    nodeLimit: opts.nodeLimit,
    afterStep: opts.afterStep,
    cachedPolicy: (namespace, name) => policies.get(`${namespace}/${name}`),
  });
  const controller = new Controller({
    name: 'forensiccase',
    logger: opts.logger,
    registry: opts.registry,
    workers: opts.workers ?? 16,
    queue: opts.queue,
    reconcile: (key, ctx) => reconciler.reconcile(key, ctx.log),
  });

  cases.addHandler({
    onAdd: (c) => controller.enqueue(c.metadata.name),
    onUpdate: (_old, c) => controller.enqueue(c.metadata.name),
    onDelete: (c) => controller.enqueue(c.metadata.name),
  });
  const owners = ownerKeys('ForensicCase', { apiVersion: API_VERSION });
  const enqueueOwners = (obj: KubernetesObject) => owners(obj).forEach((k) => controller.enqueue(k));
  // The case a label names is only a hint of whom to wake: the case itself trusts the label only
  // together with the pod UID it pinned.
  const enqueueLabelled = (...objs: KubernetesObject[]) => {
    for (const o of objs) {
      const name = o.metadata?.labels?.[CASE_LABEL];
      if (name) controller.enqueue(name);
    }
  };
  // A namespace's standing policy deleted or edited: every case isolating a pod there puts it
  // back (the first to write wins, the others find it in place).
  const enqueueNamespace = (...objs: KubernetesObject[]) => {
    for (const o of objs) {
      if (!isStandingPolicy(o)) continue;
      const ns = o.metadata?.namespace;
      for (const c of cases.list())
        if (c.spec?.target?.namespace === ns && !c.spec?.release) controller.enqueue(c.metadata.name);
    }
  };
  // A deleted or edited quarantine policy is put back by its case.
  policies.addHandler({
    onUpdate: (o, n) => {
      enqueueOwners(o);
      enqueueOwners(n);
      enqueueLabelled(o, n);
      enqueueNamespace(o, n);
    },
    onDelete: (o) => {
      enqueueOwners(o);
      enqueueLabelled(o);
      enqueueNamespace(o);
    },
  });
  pods.addHandler({
    onUpdate: (o, n) => enqueueLabelled(o, n),
    onDelete: (o) => enqueueLabelled(o),
  });
  jobs?.addHandler({ onUpdate: (_o, n) => enqueueOwners(n), onDelete: enqueueOwners });
  const enqueueHolders = (...objs: V1Node[]) => {
    const names = new Set(objs.flatMap((n) => holders(n)));
    const node = objs[0]?.metadata?.name;
    for (const c of cases.list()) if (node && c.status?.node === node) names.add(c.metadata.name);
    for (const name of names) controller.enqueue(name);
  };
  nodes.addHandler({
    onUpdate: (o, n) => enqueueHolders(o, n),
    onDelete: (o) => enqueueHolders(o),
  });

  return {
    controller,
    informers: jobs ? [cases, policies, pods, nodes, jobs] : [cases, policies, pods, nodes],
    cases,
    reconciler,
    collection,
  };
}
