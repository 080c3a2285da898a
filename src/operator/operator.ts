import { hostname } from 'node:os';
import Fastify from 'fastify';
import { readFileSync } from 'node:fs';
import { KubeClients } from '../cases/client.js';
import { caseController } from '../cases/controller.js';
import { DEFAULT_SWEEP_INTERVAL_MS, QuarantineSweeper } from '../cases/sweeper.js';
import { DEFAULT_NODE_LIMIT } from '../containment/limits.js';
import { loadKubeConfig } from '../kube/config.js';
import { startIntake, type RunningIntake } from '../intake/index.js';
import type { Logger } from '../observability/logger.js';
import { createRegistry, dialable, processMetrics } from '../observability/metrics.js';
import { Manager } from '../runtime/manager.js';
import { collectionConfig, type OperatorConfig } from './config.js';
import type { CollectionConfigInput } from '../collection/config.js';

export interface RunningOperator {
  manager: Manager;
  intake?: RunningIntake;
  metricsUrl: string;
  stop(): Promise<void>;
}

/**
 * `amber operator`: the case controller (only while leading), the Falcosidekick intake, and
 * an HTTP endpoint for metrics and probes. Readiness waits for the caches.
 */
export async function runOperator(
  cfg: OperatorConfig,
  logger: Logger,
  opts: {
    exit?: (code: number) => void;
    /** Overrides what the flat configuration says of collection (the local setup, tests). */
    collection?: CollectionConfigInput;
  } = {},
): Promise<RunningOperator> {
  const kc = loadKubeConfig(cfg.kubeconfig);
  const registry = createRegistry(true);

  const manager = new Manager({
    logger,
    exit: opts.exit,
    leaderElection: cfg.leaderElection
      ? { kubeConfig: kc, namespace: cfg.namespace, name: 'amber-operator' }
      : undefined,
  });
  processMetrics(registry, { isLeader: () => manager.isLeader() });
  const cases = caseController({
    kc,
    isLeader: () => manager.isLeader(),
    logger,
    registry,
    workers: cfg.workers,
    nodeLimit: {
      maxNodes: cfg.maxCordonedNodes ?? DEFAULT_NODE_LIMIT.maxNodes,
      maxPercent: cfg.maxCordonedNodesPercent ?? DEFAULT_NODE_LIMIT.maxPercent,
    },
    collection: opts.collection ?? collectionConfig(cfg),
    safety: {
      operatorNamespace: cfg.namespace,
      allowKubeSystem: cfg.allowKubeSystem,
      protectedNamespaces: cfg.protectedNamespaces,
    },
  });
  cases.informers.forEach((i) => manager.addInformer(i));
  manager.addController(cases.controller);

  const probes = Fastify({ logger: false });
  probes.get('/metrics', async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  probes.get('/healthz', async () => 'ok');
  probes.get('/readyz', async (_req, reply) =>
    manager.ready() ? 'ok' : reply.code(503).send('caches not synced'),
  );
  const metricsUrl = dialable(await probes.listen({ port: cfg.metricsPort, host: '0.0.0.0' }));

  await manager.start();
  let intake: RunningIntake | undefined;
  if (cfg.intakeToken) {
    const tls =
      cfg.intakeTlsCert && cfg.intakeTlsKey
        ? {
            cert: readFileSync(cfg.intakeTlsCert),
            key: readFileSync(cfg.intakeTlsKey),
            ...(cfg.intakeClientCa
              ? { ca: readFileSync(cfg.intakeClientCa), requestCert: true, rejectUnauthorized: true }
              : {}),
          }
        : undefined;
    const protectedNamespaces = [
      cfg.namespace,
      ...(cfg.allowKubeSystem ? [] : ['kube-system']),
      ...cfg.protectedNamespaces,
    ];
    intake = await startIntake({
      kubeConfig: kc,
      registry,
      logger,
      token: cfg.intakeToken,
      port: cfg.intakePort,
      tls,
      eventNamespace: 'default',
      safety: {
        operatorNamespace: cfg.namespace,
        allowKubeSystem: cfg.allowKubeSystem,
        protectedNamespaces: cfg.protectedNamespaces,
      },
      wal: cfg.walDir
        ? { baseDir: cfg.walDir, name: cfg.walName ?? hostname(), maxBytes: cfg.walMaxBytes }
        : undefined,
      limits: {
        protectedNamespaces,
        ...(cfg.maxOpenCases !== undefined ? { maxOpenCases: cfg.maxOpenCases } : {}),
        ...(cfg.maxCordonedNodes !== undefined ? { maxCordonedNodes: cfg.maxCordonedNodes } : {}),
        ...(cfg.maxCordonedNodesPercent !== undefined
          ? { maxCordonedNodesPercent: cfg.maxCordonedNodesPercent }
          : {}),
      },
    });
  } else {
    logger.warn('no intake token configured: the Falcosidekick webhook is off');
  }
  // Started after the intake replayed its log: its waiting cases are what the sweep leaves alone.
  const sweeper = new QuarantineSweeper({
    clients: new KubeClients(kc),
    logger: logger.child({ component: 'quarantine-sweep' }),
    registry,
    pendingPods: () => intake?.engine.pendingPods() ?? new Set(),
  });
  sweeper.start(DEFAULT_SWEEP_INTERVAL_MS, () => manager.isLeader());
  logger.info({ metricsUrl, intake: intake?.url }, 'operator started');

  return {
    manager,
    intake,
    metricsUrl,
    async stop() {
      await sweeper.stop();
      await intake?.close();
      await manager.stop();
      await cases.collection?.close();
      await probes.close();
    },
  };
}
