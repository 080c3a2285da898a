import type { Readable } from 'node:stream';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { ArtifactExistsError, type StoredArtifact } from './store.js';

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

/**
 * The bookkeeping every store's put shares: time it, count the result and the bytes, log what
 * was stored, and on failure release what was not read of the body (an open file, a pipe).
 */
export async function recordedPut(
  ctx: { metrics: StoreMetrics; logger: Logger; store: 's3' | 'local'; caseId: string; source: Readable },
  write: () => Promise<StoredArtifact>,
): Promise<StoredArtifact> {
  const { metrics, store } = ctx;
  const endTimer = metrics.putSeconds.startTimer({ store });
  try {
    const stored = await write();
    metrics.artifacts.inc({ store, result: 'stored' });
    metrics.bytes.inc({ store }, stored.size);
    ctx.logger.info(
      {
        caseId: ctx.caseId,
        artifact: stored.name,
        size: stored.size,
        sha256: stored.sha256,
        ...(stored.retainUntil && { retainUntil: stored.retainUntil }),
      },
      'artifact stored',
    );
    return stored;
  } catch (err) {
    ctx.source.destroy();
    metrics.artifacts.inc({ store, result: err instanceof ArtifactExistsError ? 'exists' : 'error' });
    throw err;
  } finally {
    endTimer();
  }
}
