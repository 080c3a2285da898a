import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { amberVersion } from './version.js';

/**
 * Each component registers its metrics on the Registry it is given, so tests and
 * two operators in one process never share counters.
 *
 * The default process and Node.js metrics keep their standard names (process_cpu_seconds_total,
 * nodejs_heap_size_used_bytes, ...) so stock dashboards and alerts find them; the job and
 * instance labels Prometheus adds tell Amber's apart. A prefix made them
 * amber_process_process_cpu_seconds_total.
 */
export function createRegistry(withDefaults = false): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * What every operator replica exports about itself: whether it leads (alerts on "no leader" sum
 * amber_leader across replicas) and which build it runs.
 */
export function processMetrics(registry: Registry, opts: { isLeader: () => boolean }): void {
  new Gauge({
    name: 'amber_leader',
    help: '1 while this replica holds the leader Lease and acts, 0 otherwise',
    registers: [registry],
    collect() {
      this.set(opts.isLeader() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'amber_build_info',
    help: 'Always 1; the labels say which Amber and which Node.js this replica runs',
    labelNames: ['version', 'node_version'],
    registers: [registry],
  }).set({ version: amberVersion, node_version: process.versions.node }, 1);
}

/** A listen URL a local client can dial: the wildcard bind address (0.0.0.0) is not one. */
export function dialable(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:');
}
