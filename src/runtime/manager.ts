import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.js';
import type { Controller } from './controller.js';
import { errorMessage } from './errors.js';
import type { Informer } from './informer.js';
import { LeaderElector, type LeaderElectionOptions } from './leader.js';

/**
 * Runs the informers and controllers of one process: informers start at once (a follower keeps
 * a warm cache, so it can take over fast), controllers run only while this replica leads.
 */

export interface ManagerOptions {
  logger: Logger;
  /** Without it the manager acts at once (one replica, or tests). */
  leaderElection?: Omit<LeaderElectionOptions, 'logger'>;
  /** How long a graceful stop waits for the reconciles in flight. */
  shutdownTimeoutMs?: number;
  /** Ends the process; Kubernetes restarts it. Replaceable for tests. */
  exit?: (code: number) => void;
}

export class Manager {
  private readonly informers: Informer<KubernetesObject>[] = [];
  private readonly controllers: Controller[] = [];
  private readonly log: Logger;
  private readonly elector: LeaderElector | undefined;
  private readonly shutdownTimeoutMs: number;
  private readonly exit: (code: number) => void;
  private readonly stopController = new AbortController();
  private synced = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: ManagerOptions) {
    this.log = opts.logger.child({ component: 'manager' });
    this.shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 30_000;
    this.exit = opts.exit ?? ((code) => process.exit(code));
    this.elector = opts.leaderElection && new LeaderElector({ ...opts.leaderElection, logger: opts.logger });
  }

  addInformer<T extends KubernetesObject>(informer: Informer<T>): void {
    this.informers.push(informer as unknown as Informer<KubernetesObject>);
  }

  addController(controller: Controller): void {
    this.controllers.push(controller);
  }

  /** True once every informer has synced (the readiness probe), until stop. */
  ready(): boolean {
    return this.synced && !this.stopping;
  }

  isLeader(): boolean {
    return this.elector ? this.elector.isLeader() : this.synced && !this.stopping;
  }

  /** Starts informers, waits for their caches, then runs the controllers (once leading). */
  async start(): Promise<void> {
    for (const informer of this.informers) informer.start();
    await Promise.all(this.informers.map((i) => i.waitForSync(this.stopController.signal)));
    this.synced = true;
    this.log.info({ informers: this.informers.length }, 'caches synced');
    if (!this.elector) return this.startControllers();
    void this.elector.run({
      onStartedLeading: () => this.startControllers(),
      onStoppedLeading: (reason) => {
        if (reason === 'lost') this.fatal(new Error('lost leadership'));
      },
    });
  }

  /**
   * Graceful stop (SIGTERM): stop taking work, wait for reconciles in flight (bounded), release
   * the lease so the next replica takes over at once, stop the informers.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping');
      this.stopController.abort();
      const drained = await Promise.all(this.controllers.map((c) => c.stop(this.shutdownTimeoutMs)));
      if (drained.includes(false)) this.log.warn('stopped with reconciles still running');
      await this.elector?.stop();
      await Promise.all(this.informers.map((i) => i.stop()));
      this.log.info('stopped');
    })();
    return this.stopping;
  }

  /**
   * For states the process cannot reason about (lost leadership, a CatastrophicError): stop at
   * once and exit non-zero. Pass as a Controller's onCatastrophicError.
   */
  readonly fatal = (err: unknown): void => {
    this.log.fatal({ err: errorMessage(err) }, 'exiting');
    this.exit(1);
  };

  /** SIGTERM/SIGINT: graceful stop, then exit 0. */
  handleSignals(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      this.log.info({ signal }, 'signal received');
      this.stop().then(
        () => this.exit(0),
        (err: unknown) => this.fatal(err),
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  private startControllers(): void {
    if (this.stopping) return;
    for (const controller of this.controllers) controller.start();
  }
}
