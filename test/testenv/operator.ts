import type { KubeConfig } from '@kubernetes/client-node';
import { caseController } from '../../src/cases/controller.js';
import type { CollectionConfigInput } from '../../src/collection/config.js';
import { silentLogger, createLogger } from '../../src/observability/logger.js';
import { createRegistry } from '../../src/observability/metrics.js';
import { OPERATOR_NAMESPACE } from './rbac.js';

/**
 * The case controller running in the test process, as the operator's ServiceAccount; with
 * `collection`, it also collects and seals (ADR 0006).
 */
export async function startCaseController(
  kc: KubeConfig,
  opts: {
    afterStep?: (step: string, caseName: string) => void | Promise<void>;
    allowKubeSystem?: boolean;
    retryBaseDelayMs?: number;
    collection?: CollectionConfigInput;
  } = {},
) {
  const registry = createRegistry();
  const logger = process.env.AMBER_TEST_LOGS ? createLogger({ test: true }) : silentLogger;
  const parts = caseController({
    kc,
    logger,
    registry,
    safety: {
      operatorNamespace: OPERATOR_NAMESPACE,
      allowKubeSystem: opts.allowKubeSystem ?? false,
      protectedNamespaces: [],
    },
    afterStep: opts.afterStep,
    collection: opts.collection && { namespace: OPERATOR_NAMESPACE, ...opts.collection },
    resyncMs: 0,
    queue: opts.retryBaseDelayMs
      ? { baseDelayMs: opts.retryBaseDelayMs, maxDelayMs: opts.retryBaseDelayMs }
      : undefined,
  });
  for (const inf of parts.informers) inf.start();
  await Promise.all(parts.informers.map((i) => i.waitForSync()));
  parts.controller.start();
  return {
    ...parts,
    registry,
    async stop() {
      await parts.controller.stop(5_000);
      await Promise.all(parts.informers.map((i) => i.stop()));
      parts.collection?.close();
    },
  };
}
