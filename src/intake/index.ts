import { dialable } from '../observability/metrics.js';
import type { KubeConfig, V1NetworkPolicy } from '@kubernetes/client-node';
import { STANDING_POLICY_NAME } from '../containment/labels.js';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { GROUP, VERSION } from '../api/common.js';
import { FORENSIC_CASE } from '../api/forensiccase.js';
import { RESPONSE_POLICY } from '../api/responsepolicy.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage, isConflict, isNotFound } from '../runtime/errors.js';
import { apiListWatch, Informer } from '../runtime/informer.js';
import { buildIntakeApp, type IntakeServerOptions } from './app.js';
import type { CaseLike } from './cases.js';
import type { SafetyConfig } from '../cases/safety.js';
import { IntakeEngine, type QueueLimits } from './engine.js';
import { EarlyIsolator, type PodIsolationApi } from './isolate.js';
import { kubeCaseApi, type CaseApi, type PolicyStatusApi } from './kube.js';
import { createIntakeMetrics } from './metrics.js';
import { WriteAheadLog, type RecoveredRecord, type WalOptions } from './wal.js';
import type { GlobalLimits, NamedPolicy } from './policy.js';
import { desiredStatus, evaluatePolicy, type PolicyEvaluation, type PolicyItem } from './policystatus.js';

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
  /** The write-ahead log (ADR 0014); without it a crash loses the alerts not yet written. */
  wal?: Omit<WalOptions, 'logger' | 'onBytes'>;
  /**
   * The case reconciler's safety configuration: with it (and the log), the intake isolates the
   * pod of an opening alert itself, for a case the reconciler would not refuse (ADR 0025).
   */
  safety?: SafetyConfig;
  /** For tests: the API client to write through (default: the kubeConfig's). */
  api?: CaseApi;
  /** For tests: where early isolation reads and labels pods (default: the kubeConfig's API server). */
  podApi?: PodIsolationApi;
  /** For tests: where ResponsePolicy statuses are written (default: the kubeConfig's API server). */
  policyStatusApi?: PolicyStatusApi;
}

export interface RunningIntake {
  app: FastifyInstance;
  engine: IntakeEngine;
  /** The early isolator (ADR 0025), when the intake isolates pods itself. */
  isolator?: EarlyIsolator;
  /** The address it listens on, e.g. http://127.0.0.1:2801. */
  url: string;
  close(): Promise<void>;
}

/**
 * The intake as the operator runs it: informers for ResponsePolicies (whose InForce condition it
 * writes) and ForensicCases, the engine that writes cases, and the webhook listening on host:port. close() stops listening,
 * writes what is waiting (a few seconds at most) and stops the informers.
 */
export async function startIntake(opts: StartIntakeOptions): Promise<RunningIntake> {
  const log = opts.logger.child({ component: 'intake' });
  const metrics = createIntakeMetrics(opts.registry);
  const api = opts.api ?? kubeCaseApi(opts.kubeConfig);
  // Replays wait for the caches: the cases' marks say which logged alerts were counted already.
  let replay: ((records: RecoveredRecord[]) => void) | undefined;
  const adoptedEarly: RecoveredRecord[] = [];
  // Opened first: its lock says this replica is alive before anything else can take its log.
  const opened = opts.wal
    ? await WriteAheadLog.open({
        ...opts.wal,
        logger: log.child({ wal: opts.wal.name }),
        onBytes: (bytes) => metrics.logBytes.set(bytes),
        // A replica gone for good while this one runs: its log is replayed here.
        onAdopted: (records) => (replay ? replay(records) : adoptedEarly.push(...records)),
      })
    : undefined;
  if (opts.wal) metrics.logLimitBytes.set(opts.wal.maxBytes);
  else log.warn('no write-ahead log configured (AMBER_WAL_DIR): alerts not yet written are lost in a crash');
  const isolator =
    opts.safety && opened
      ? new EarlyIsolator(opts.podApi ?? kubeCaseApi(opts.kubeConfig), log, (outcome) =>
          metrics.earlyIsolation.inc({ outcome }),
        )
      : undefined;
  const engine = new IntakeEngine({
    api,
    journal: opened?.wal,
    logger: log,
    metrics,
    limits: opts.limits,
    queue: opts.queue,
    flushIntervalMs: opts.flushIntervalMs,
    eventNamespace: opts.eventNamespace,
    earlyIsolation: isolator ? { safety: opts.safety!, isolator } : undefined,
  });
  // The standing policies, by name in every namespace: a delete (or a relist that misses one)
  // makes the isolator create it again before its next label there (ADR 0027). Only the watch
  // is added to the hot path's cost; a label write still needs no read.
  const standing = isolator
    ? new Informer<V1NetworkPolicy & { metadata: { name: string } }>(
        apiListWatch(opts.kubeConfig, '/apis/networking.k8s.io/v1/networkpolicies', {
          fieldSelector: `metadata.name=${STANDING_POLICY_NAME}`,
        }),
        { logger: log.child({ informer: 'standing-policies' }) },
      )
    : undefined;
  standing?.addHandler({
    onDelete: (p) => {
      if (p.metadata.namespace) isolator!.forgetStandingPolicy(p.metadata.namespace);
    },
  });

  const policies = new Informer<PolicyItem & { metadata: { name: string } }>(
    apiListWatch(opts.kubeConfig, `/apis/${GROUP}/${VERSION}/${RESPONSE_POLICY.plural}`),
    { logger: log.child({ informer: 'responsepolicies' }) },
  );
  const writeStatus = policyStatusWriter(opts.policyStatusApi ?? kubeCaseApi(opts.kubeConfig), log);
  const refreshPolicies = () => {
    const inForce: NamedPolicy[] = [];
    for (const item of policies.list()) {
      const evaluation = evaluatePolicy(item);
      if (evaluation.policy) inForce.push(evaluation.policy);
      writeStatus(item, evaluation);
    }
    engine.setPolicies(inForce);
  };
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
  standing?.start();
  // Decisions before both caches are filled could open a second case for a pod: wait.
  await Promise.all([policies.waitForSync(), cases.waitForSync(), standing?.waitForSync(), countNodes()]);
  const nodeTimer = setInterval(() => void countNodes(), opts.nodeCountIntervalMs ?? 60_000);
  if (opened) {
    engine.restore([...opened.recovered, ...adoptedEarly]);
    replay = (records) => engine.restore(records);
  }
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
    isolator,
    url,
    async close() {
      await app.close();
      clearInterval(nodeTimer);
      await engine.stop();
      await opened?.wal.close();
      await Promise.all([policies.stop(), cases.stop(), standing?.stop()]);
    },
  };
}

/**
 * Writes a policy's InForce condition when it differs from what the object says. Idempotent, so
 * every replica may run it: they compute the same status from the same object, and a write
 * that loses a race (409) is dropped; the object's next update is evaluated again. A failed
 * write is retried at the informer's next resync.
 */
function policyStatusWriter(
  api: PolicyStatusApi,
  log: Logger,
): (item: PolicyItem, evaluation: PolicyEvaluation) => void {
  const inFlight = new Set<string>();
  return (item, evaluation) => {
    const name = item.metadata?.name;
    const resourceVersion = item.metadata?.resourceVersion;
    if (!name) return;
    const status = desiredStatus(item, evaluation, new Date());
    if (!status) return;
    const key = `${name}@${resourceVersion}`;
    if (inFlight.has(key)) return;
    inFlight.add(key);
    const { reason, message } = evaluation.condition;
    if (!evaluation.policy) log.warn({ policy: name, reason, message }, 'ResponsePolicy not in force');
    else log.info({ policy: name, reason }, 'ResponsePolicy in force');
    api
      .patchPolicyStatus(name, { metadata: { resourceVersion }, status })
      .catch((err: unknown) => {
        if (!isConflict(err) && !isNotFound(err))
          log.warn({ err: errorMessage(err), policy: name }, 'could not write the ResponsePolicy status');
      })
      .finally(() => inFlight.delete(key));
  };
}
