import { Gauge, Histogram, type Registry } from 'prom-client';
import { PHASES, type Phase } from '../api/forensiccase.js';

export interface CaseMetrics {
  timeToContained: Histogram;
  casesByPhase: Gauge<'phase'>;
}

/**
 * `phases` is read at scrape time (from the informer's cache), so the gauge is never stale. Every
 * replica keeps the cache warm, but only the leader exports the counts: a plain sum() across
 * replicas then counts each case once.
 */
export function caseMetrics(
  registry: Registry,
  phases: () => Iterable<Phase | undefined> = () => [],
  isLeader: () => boolean = () => true,
): CaseMetrics {
  return {
    timeToContained: new Histogram({
      name: 'amber_case_time_to_contained_seconds',
      help: 'Seconds from a ForensicCase being created to its pod being contained',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    casesByPhase: new Gauge({
      name: 'amber_cases',
      help: 'ForensicCases by phase',
      labelNames: ['phase'],
      registers: [registry],
      collect() {
        this.reset();
        if (!isLeader()) return;
        const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
        for (const p of phases()) counts.set(p ?? 'Pending', (counts.get(p ?? 'Pending') ?? 0) + 1);
        for (const [phase, n] of counts) this.set({ phase }, n);
      },
    }),
  };
}
