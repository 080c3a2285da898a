import { dialable } from '../observability/metrics.js';
import type { KubeConfig } from '@kubernetes/client-node';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { GROUP, VERSION } from '../api/common.js';
import { FORENSIC_CASE } from '../api/forensiccase.js';
import { RESPONSE_POLICY, ResponsePolicySpec } from '../api/responsepolicy.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage } from '../runtime/errors.js';
import { apiListWatch, Informer } from '../runtime/informer.js';
import { buildIntakeApp, type IntakeServerOptions } from './app.js';
import type { CaseLike } from './cases.js';
import { IntakeEngine, type QueueLimits } from './engine.js';
import { kubeCaseApi, type CaseApi } from './kube.js';
import { createIntakeMetrics } from './metrics.js';
import type { GlobalLimits, NamedPolicy } from './policy.js';

export {
  buildIntakeApp,
  intakePlugin,
  type AlertSink,
  type IntakeAppDeps,
  type IntakeServerOptions,
} from './app.js';
export { IntakeEngine, type AcceptOutcome } from './engine.js';
export { createIntakeMetrics, type IntakeMetrics } from './metrics.js';
export { DEFAULT_GLOBAL_LIMITS, type GlobalLimits } from './policy.js';

export interface StartIntakeOptions {
  kubeConfig: KubeConfig;
  registry: Registry;
  logger: Logger;
  /** Bearer token Falcosidekick must send; at least 16 characters. */
  token: string;
  port: number;
  host?: string;
  tls?: IntakeServerOptions['https'];
  limits?: Partial<GlobalLimits>;
  queue?: Partial<QueueLimits>;
  bodyLimit?: number;
  flushIntervalMs?: number;
  /** Where Events about cluster-scoped objects go. */
  eventNamespace?: string;
  /** How often the cluster's node count is read again (for the percentage node limit). */
  nodeCountIntervalMs?: number;
  /** For tests: the API client to write through (default: the kubeConfig's). */
  api?: CaseApi;
}

export interface RunningIntake {
  app: FastifyInstance;
  engine: IntakeEngine;
  /** The address it listens on, e.g. http://127.0.0.1:2801. */
  url: string;
  close(): Promise<void>;
}

/**
 * The intake as the operator runs it: informers for ResponsePolicies and ForensicCases, the
 * engine that writes cases, and the webhook listening on host:port. close() stops listening,
 * writes what is waiting (a few seconds at most) and stops the informers.
 */
export async function startIntake(opts: StartIntakeOptions): Promise<RunningIntake> {
  const log = opts.logger.child({ component: 'intake' });
  const metrics = createIntakeMetrics(opts.registry);
  const api = opts.api ?? kubeCaseApi(opts.kubeConfig);
  const engine = new IntakeEngine({
    api,
    logger: log,
    metrics,
    limits: opts.limits,
    queue: opts.queue,
    flushIntervalMs: opts.flushIntervalMs,
    eventNamespace: opts.eventNamespace,
  });

  const policies = new Informer<{ metadata?: { name?: string }; spec?: unknown }>(
    apiListWatch(opts.kubeConfig, `/apis/${GROUP}/${VERSION}/${RESPONSE_POLICY.plural}`),
    { logger: log.child({ informer: 'responsepolicies' }) },
  );
  const refreshPolicies = () => engine.setPolicies(validPolicies(policies.list(), log));
  policies.addHandler({ onAdd: refreshPolicies, onUpdate: refreshPolicies, onDelete: refreshPolicies });

  const cases = new Informer<CaseLike & { metadata: { name: string } }>(
    apiListWatch(opts.kubeConfig, `/apis/${GROUP}/${VERSION}/${FORENSIC_CASE.plural}`),
    { logger: log.child({ informer: 'forensiccases' }) },
  );
  cases.addHandler({
    onAdd: (c) => engine.observeCase(c),
    onUpdate: (_old, c) => engine.observeCase(c),
    onDelete: (c) => engine.forgetCase(c.metadata.name),
  });

  const countNodes = () =>
    api.countNodes().then(
      (n) => engine.setClusterNodes(n),
      (err: unknown) => log.warn({ err: errorMessage(err) }, 'could not count nodes'),
    );
  policies.start();
  cases.start();
  // Decisions before both caches are filled could open a second case for a pod: wait.
  await Promise.all([policies.waitForSync(), cases.waitForSync(), countNodes()]);
  const nodeTimer = setInterval(() => void countNodes(), opts.nodeCountIntervalMs ?? 60_000);
  engine.start();

  const app = buildIntakeApp(
    { sink: engine, token: opts.token, metrics, logger: log, bodyLimit: opts.bodyLimit },
    { https: opts.tls },
  );
  const url = dialable(await app.listen({ port: opts.port, host: opts.host ?? '0.0.0.0' }));
  log.info({ url, tls: Boolean(opts.tls) }, 'intake listening');

  return {
    app,
    engine,
    url,
    async close() {
      await app.close();
      clearInterval(nodeTimer);
      await engine.stop();
      await Promise.all([policies.stop(), cases.stop()]);
    },
  };
}

/** The policies that validate; an invalid one is skipped with a log line saying why. */
export function validPolicies(
  items: Array<{ metadata?: { name?: string }; spec?: unknown }>,
  log: Logger,
): NamedPolicy[] {
  const out: NamedPolicy[] = [];
  for (const item of items) {
    const name = item.metadata?.name;
    const spec = ResponsePolicySpec.safeParse(item.spec ?? {});
    if (name && spec.success) out.push({ name, spec: spec.data });
    else
      log.warn(
        { policy: name, issues: spec.error?.issues.slice(0, 5) },
        'ignoring an invalid ResponsePolicy',
      );
  }
  return out;
}
