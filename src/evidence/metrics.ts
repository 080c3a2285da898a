import { Counter, Histogram, type Registry } from 'prom-client';

/** Evidence store metrics, shared by every store registered on the same Registry. */
export interface StoreMetrics {
  artifacts: Counter<'store' | 'result'>;
  bytes: Counter<'store'>;
  putSeconds: Histogram<'store'>;
}

export function storeMetrics(registry: Registry): StoreMetrics {
  // Two stores on one registry (S3 + local in a test) share the metrics instead of clashing.
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
  return {
    artifacts:
      existing('amber_evidence_artifacts_total') ??
      new Counter({
        name: 'amber_evidence_artifacts_total',
        help: 'Artifacts written to the evidence store, by result (stored, exists, error)',
        labelNames: ['store', 'result'],
        registers: [registry],
      }),
    bytes:
      existing('amber_evidence_bytes_total') ??
      new Counter({
        name: 'amber_evidence_bytes_total',
        help: 'Bytes of evidence written and digested',
        labelNames: ['store'],
        registers: [registry],
      }),
    putSeconds:
      existing('amber_evidence_put_seconds') ??
      new Histogram({
        name: 'amber_evidence_put_seconds',
        help: 'Time to stream, digest and store one artifact',
        labelNames: ['store'],
        buckets: [0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300],
        registers: [registry],
      }),
  };
}
