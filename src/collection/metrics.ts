import { Counter, Histogram, type Registry } from 'prom-client';

export interface CollectionMetrics {
  timeToSealed: Histogram;
  /** One per container when a case's collection ends: the collector's outcome, seen by the operator. */
  containers: Counter<'outcome'>;
  /** Items a collector could not read, summed from the reports (its own metrics die with the Job). */
  collectorFailures: Counter;
  jobsCreated: Counter;
  inlineSeconds: Histogram;
}

export function collectionMetrics(registry: Registry): CollectionMetrics {
  return {
    timeToSealed: new Histogram({
      name: 'amber_case_time_to_sealed_seconds',
      help: 'Seconds from a ForensicCase being created to its evidence being sealed',
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    containers: new Counter({
      name: 'amber_collection_containers_total',
      help: 'Containers whose collection ended, by outcome: reported (its report.json is stored, with its gaps) or missing (no report: the Job failed, the container was gone)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    collectorFailures: new Counter({
      name: 'amber_collection_items_unreadable_total',
      help: "Items the collectors recorded as unreadable in their reports (each is a gap of its case's evidence)",
      registers: [registry],
    }),
    jobsCreated: new Counter({
      name: 'amber_collection_jobs_created_total',
      help: 'Collection Jobs created on suspect nodes',
      registers: [registry],
    }),
    inlineSeconds: new Histogram({
      name: 'amber_collection_inline_seconds',
      help: 'Seconds the operator spent collecting one container itself (inline mode)',
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
  };
}
