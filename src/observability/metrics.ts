import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Each component registers its metrics on the Registry it is given, so tests and
 * two operators in one process never share counters.
 */
export function createRegistry(withDefaults = false): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'amber_process_' });
  return registry;
}

/** A listen URL a local client can dial: the wildcard bind address (0.0.0.0) is not one. */
export function dialable(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:');
}
