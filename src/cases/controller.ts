import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { API_VERSION } from '../api/common.js';
import { FORENSIC_CASE, type ForensicCase } from '../api/forensiccase.js';
import { CollectionConfig, type CollectionConfigInput } from '../collection/config.js';
import { MANAGED_BY } from '../collection/job.js';
import { CollectionPipeline } from '../collection/pipeline.js';
import type { Logger } from '../observability/logger.js';
import { Controller, ownerKeys } from '../runtime/controller.js';
import { Informer, apiListWatch } from '../runtime/informer.js';
import type { WorkQueueOptions } from '../runtime/workqueue.js';
import { KubeClients } from './client.js';
import { CaseEvents } from './events.js';
import { caseMetrics } from './metrics.js';
import { CaseReconciler } from './reconciler.js';
import type { SafetyConfig } from './safety.js';

export interface CaseControllerOptions {
  kc: KubeConfig;
  logger: Logger;
  registry: Registry;
  safety: SafetyConfig;
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
 * The case controller: ForensicCases and the NetworkPolicies and collection Jobs they own feed
 * one queue of case names; each name is reconciled by CaseReconciler.
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
  const policies = new Informer(
    apiListWatch(opts.kc, '/apis/networking.k8s.io/v1/networkpolicies', {
      labelSelector: 'app.kubernetes.io/managed-by=amber',
    }),
    { logger: opts.logger.child({ informer: 'networkpolicies' }) },
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
    afterStep: opts.afterStep,
    policyCached: (namespace, name) => policies.get(`${namespace}/${name}`) !== undefined,
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
  // A deleted or edited quarantine policy is put back by its case.
  policies.addHandler({ onUpdate: (_o, n) => enqueueOwners(n), onDelete: enqueueOwners });
  jobs?.addHandler({ onUpdate: (_o, n) => enqueueOwners(n), onDelete: enqueueOwners });

  return {
    controller,
    informers: jobs ? [cases, policies, jobs] : [cases, policies],
    cases,
    reconciler,
    collection,
  };
}
