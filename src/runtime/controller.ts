import type { KubernetesObject } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../observability/logger.js';
import { classify, errorMessage, retryLogLevel } from './errors.js';
import { objectKey, type Informer } from './informer.js';
import { WorkQueue, type WorkQueueOptions } from './workqueue.js';

/**
 * Ties informers to a work queue and N workers that call reconcile(key). The queue holds
 * keys, not events: reconcile reads the current state (from an informer's cache) and converges.
 */

export interface ReconcileContext {
  key: string;
  /** Unique per reconcile pass: ties together every log line of one pass. */
  reconcileId: string;
  /** Carries key and reconcileId. */
  log: Logger;
}

/** Nothing: done until something changes. requeueAfterMs: look again later (e.g. a Job runs). */
export type ReconcileResult = void | { requeueAfterMs: number };

export type Reconcile = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult>;

export interface ControllerOptions {
  name: string;
  reconcile: Reconcile;
  logger: Logger;
  registry: Registry;
  workers?: number;
  queue?: WorkQueueOptions;
  /**
   * Called when reconcile throws a TerminalError, to record it where a person sees it (a
   * condition on the object). The key is not retried; if this hook fails, it is.
   */
  onTerminalError?: (key: string, err: unknown, ctx: ReconcileContext) => Promise<void>;
  /** A CatastrophicError: the state is unknown. Default: exit, and Kubernetes restarts us clean. */
  onCatastrophicError?: (err: unknown) => void;
}

type Result = 'success' | 'requeue' | 'error' | 'conflict' | 'terminal' | 'catastrophic';

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconcile: Reconcile;
  private readonly log: Logger;
  private readonly workers: number;
  private readonly metrics: RuntimeMetrics;
  private readonly onTerminalError: ControllerOptions['onTerminalError'];
  private readonly onCatastrophicError: (err: unknown) => void;
  private running: Promise<void>[] = [];

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.reconcile = opts.reconcile;
    this.log = opts.logger.child({ controller: opts.name });
    this.workers = opts.workers ?? 1;
    this.queue = new WorkQueue(opts.queue);
    this.onTerminalError = opts.onTerminalError;
    this.onCatastrophicError = opts.onCatastrophicError ?? (() => process.exit(1));
    this.metrics = runtimeMetrics(opts.registry);
    this.metrics.addQueue(this.name, this.queue);
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  /**
   * Enqueues keys for the informer's events: by default the object's own key; pass
   * ownerKeys(...) to enqueue the owner of a child instead.
   */
  watch<T extends KubernetesObject>(
    informer: Informer<T>,
    toKeys: (obj: T) => string[] = (o) => [objectKey(o)],
  ): void {
    const enqueue = (obj: T) => toKeys(obj).forEach((key) => this.queue.add(key));
    informer.addHandler({
      onAdd: enqueue,
      onUpdate: (old, cur) => {
        enqueue(cur);
        // An owner reference may have been removed or changed: the old owner must look too.
        if (old !== cur) enqueue(old);
      },
      onDelete: enqueue,
    });
  }

  start(): void {
    if (this.running.length > 0) return;
    this.log.info({ workers: this.workers }, 'starting workers');
    this.running = Array.from({ length: this.workers }, () => this.work());
  }

  /**
   * Stops handing out keys and waits for the reconciles in flight, at most timeoutMs.
   * Resolves to true if they all finished.
   */
  async stop(timeoutMs = 30_000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const drained = Promise.all([this.queue.shutDown(), ...this.running]).then(() => true as const);
    const finished = await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    if (!finished) this.log.warn({ timeoutMs }, 'reconciles still running at shutdown');
    this.metrics.removeQueue(this.name);
    return finished;
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.process(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private async process(key: string): Promise<void> {
    const reconcileId = randomUUID();
    const ctx: ReconcileContext = { key, reconcileId, log: this.log.child({ key, reconcileId }) };
    const endTimer = this.metrics.duration.startTimer({ controller: this.name });
    let result: Result;
    try {
      const res = await this.reconcile(key, ctx);
      this.queue.forget(key);
      if (res && res.requeueAfterMs > 0) {
        this.queue.addAfter(key, res.requeueAfterMs);
        result = 'requeue';
      } else {
        result = 'success';
      }
    } catch (err) {
      result = await this.handleError(key, err, ctx);
    }
    endTimer();
    this.metrics.total.inc({ controller: this.name, result });
  }

  private async handleError(key: string, err: unknown, ctx: ReconcileContext): Promise<Result> {
    const kind = classify(err);
    const message = errorMessage(err);
    switch (kind) {
      case 'conflict':
        // Someone wrote first; the next pass reads their version. Not worth an error log.
        ctx.log.debug({ err: message }, 'conflict, requeueing');
        this.retry(key);
        return 'conflict';
      case 'terminal':
        ctx.log.warn({ err: message }, 'terminal error, not retrying');
        this.queue.forget(key);
        if (this.onTerminalError) {
          try {
            await this.onTerminalError(key, err, ctx);
          } catch (recordErr) {
            const delayMs = this.retry(key);
            const attempt = this.queue.numRequeues(key);
            ctx.log[retryLogLevel(recordErr, attempt)](
              { err: errorMessage(recordErr), attempt, delayMs },
              'could not record a terminal error, retrying',
            );
          }
        }
        return 'terminal';
      case 'catastrophic':
        ctx.log.fatal(
          { err: message, stack: err instanceof Error ? err.stack : undefined },
          'catastrophic error',
        );
        this.onCatastrophicError(err);
        return 'catastrophic';
      case 'retryable': {
        // Logged at warn while the failure looks transient (a burst, a restarting API server):
        // the retry is the remedy and nobody has to act; error once it persists or is not.
        const delayMs = this.retry(key);
        const attempt = this.queue.numRequeues(key);
        ctx.log[retryLogLevel(err, attempt)](
          { err: message, attempt, delayMs },
          'reconcile failed, retrying',
        );
        return 'error';
      }
    }
  }

  private retry(key: string): number {
    this.metrics.retries.inc({ controller: this.name });
    return this.queue.addRateLimited(key);
  }
}

/**
 * Enqueue the owner for events on a child: for each ownerReference of the given kind (and
 * apiVersion, if given), the owner's key. Owners are cluster-scoped unless `namespaced`, in
 * which case they live in the child's namespace (Kubernetes allows no other).
 */
export function ownerKeys(
  kind: string,
  opts: { apiVersion?: string; namespaced?: boolean } = {},
): (obj: KubernetesObject) => string[] {
  return (obj) =>
    (obj.metadata?.ownerReferences ?? [])
      .filter(
        (ref) => ref.kind === kind && (opts.apiVersion === undefined || ref.apiVersion === opts.apiVersion),
      )
      .map((ref) =>
        opts.namespaced && obj.metadata?.namespace ? `${obj.metadata.namespace}/${ref.name}` : ref.name,
      );
}

interface RuntimeMetrics {
  total: Counter<'controller' | 'result'>;
  duration: Histogram<'controller'>;
  retries: Counter<'controller'>;
  addQueue(controller: string, queue: WorkQueue): void;
  removeQueue(controller: string): void;
}

// One set of metrics per Registry, shared by the controllers registered on it.
const metricsByRegistry = new WeakMap<Registry, RuntimeMetrics>();

function runtimeMetrics(registry: Registry): RuntimeMetrics {
  const existing = metricsByRegistry.get(registry);
  if (existing) return existing;
  const queues = new Map<string, WorkQueue>();
  const metrics: RuntimeMetrics = {
    total: new Counter({
      name: 'amber_reconcile_total',
      help: 'Reconcile passes by controller and result',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'amber_reconcile_duration_seconds',
      help: 'Time one reconcile pass took',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    retries: new Counter({
      name: 'amber_workqueue_retries_total',
      help: 'Keys requeued with backoff after a failed reconcile',
      labelNames: ['controller'],
      registers: [registry],
    }),
    addQueue(controller, queue) {
      if (queues.has(controller)) throw new Error(`a controller named ${controller} is already registered`);
      queues.set(controller, queue);
    },
    removeQueue(controller) {
      queues.delete(controller);
    },
  };
  new Gauge({
    name: 'amber_workqueue_depth',
    help: 'Keys waiting to be reconciled',
    labelNames: ['controller'],
    registers: [registry],
    collect() {
      for (const [controller, queue] of queues) this.set({ controller }, queue.length);
    },
  });
  metricsByRegistry.set(registry, metrics);
  return metrics;
}
