import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../observability/logger.js';
import { errorMessage, isConflict, isNotFound } from './errors.js';

/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.
 *
 * Safety rests on two rules:
 * - every write is a replace carrying the resourceVersion we read, so of two replicas racing for
 *   the lease only one write succeeds (the other gets 409);
 * - a follower takes an unreleased lease only after it has seen the lease unchanged for
 *   leaseDuration on its own clock, while the leader stops acting once renewDeadline
 *   (< leaseDuration) has passed since its last successful renew. So the old leader has given up
 *   before anyone else can take over, without comparing clocks across machines.
 */

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  /** Unique per replica; defaults to hostname_uuid. */
  identity?: string;
  logger: Logger;
  /** How long a follower waits on an unchanged lease before taking it. */
  leaseDurationMs?: number;
  /** How long the leader keeps acting without a successful renew. */
  renewDeadlineMs?: number;
  /** Time between attempts to acquire or renew. */
  retryPeriodMs?: number;
}

export interface LeadershipCallbacks {
  onStartedLeading(): void;
  /** 'lost': renewing failed or someone else holds the lease; stop acting (exit). */
  onStoppedLeading(reason: 'lost' | 'released'): void;
}

export class LeaderElector {
  readonly identity: string;
  private readonly api: CoordinationV1Api;
  private readonly log: Logger;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly stopController = new AbortController();
  private leading = false;
  /** The lease as last read or written: its resourceVersion guards the next write. */
  private lease: V1Lease | undefined;
  /** When, on our clock, the holder/renewTime last changed. */
  private observed = { record: '', atMs: 0 };
  private running: Promise<void> | undefined;
  private callbacks: LeadershipCallbacks | undefined;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.identity = opts.identity ?? `${hostname()}_${randomUUID()}`;
    this.api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
    this.log = opts.logger.child({ lease: `${opts.namespace}/${opts.name}`, identity: this.identity });
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.retryPeriodMs < this.renewDeadlineMs && this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new Error('leader election needs retryPeriod < renewDeadline < leaseDuration');
    }
    if (this.leaseDurationMs < 1000)
      throw new Error('leaseDuration is stored in whole seconds: use at least 1000 ms');
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Campaigns until it leads, then renews until leadership is lost or stop() is called. */
  run(callbacks: LeadershipCallbacks): Promise<void> {
    this.callbacks = callbacks;
    this.running ??= this.campaign(callbacks);
    return this.running;
  }

  /** Stops campaigning or renewing and, if leading, releases the lease so the next replica takes over now. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.running;
    const wasLeading = this.leading;
    this.leading = false;
    // Even if not yet leading: an attempt that was in flight may have just won the lease.
    await this.release();
    if (wasLeading) this.callbacks?.onStoppedLeading('released');
  }

  private async campaign(callbacks: LeadershipCallbacks): Promise<void> {
    const signal = this.stopController.signal;
    this.log.info('campaigning for leadership');
    while (!signal.aborted && !(await this.tryAcquireOrRenew(this.renewDeadlineMs))) {
      // Jitter so that replicas that start together do not keep colliding.
      await this.pause(this.retryPeriodMs * (1 + Math.random() * 1.2));
    }
    if (signal.aborted) return;
    this.leading = true;
    this.log.info('started leading');
    callbacks.onStartedLeading();

    let lastRenewMs = Date.now();
    for (;;) {
      await this.pause(this.retryPeriodMs);
      if (signal.aborted) return;
      const remainingMs = lastRenewMs + this.renewDeadlineMs - Date.now();
      if (remainingMs > 0 && (await this.tryAcquireOrRenew(remainingMs))) {
        lastRenewMs = Date.now();
        continue;
      }
      if (signal.aborted) return;
      const takenOver = this.heldByOther();
      if (takenOver || Date.now() - lastRenewMs >= this.renewDeadlineMs) {
        this.leading = false;
        this.log.error({ holder: this.lease?.spec?.holderIdentity, takenOver }, 'lost leadership');
        callbacks.onStoppedLeading('lost');
        return;
      }
    }
  }

  /** One attempt, bounded by timeoutMs (a hung request must not outlive the renew deadline). */
  private async tryAcquireOrRenew(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.attempt(), timeout]);
    } catch (err) {
      if (!isConflict(err)) this.log.warn({ err: errorMessage(err) }, 'lease request failed');
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private async attempt(): Promise<boolean> {
    const { namespace, name } = this.opts;
    let current: V1Lease;
    try {
      current = await this.api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const now = new V1MicroTime();
      const created = await this.api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: { ...this.specFor(now), acquireTime: now, leaseTransitions: 0 },
        },
      });
      this.remember(created);
      return true;
    }
    this.remember(current);
    const spec = current.spec ?? {};
    const heldByUs = spec.holderIdentity === this.identity;
    if (this.heldByOther() && !this.expired(spec.leaseDurationSeconds)) return false;

    const now = new V1MicroTime();
    const body: V1Lease = {
      ...current,
      spec: {
        ...this.specFor(now),
        acquireTime: heldByUs ? spec.acquireTime : now,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (heldByUs ? 0 : 1),
      },
    };
    // Carries current.metadata.resourceVersion: fails with 409 if anyone wrote since our read.
    this.remember(await this.api.replaceNamespacedLease({ namespace, name, body }));
    if (!heldByUs) this.log.info({ previous: spec.holderIdentity ?? null }, 'acquired the lease');
    return true;
  }

  private async release(): Promise<void> {
    const lease = this.lease;
    if (!lease || lease.spec?.holderIdentity !== this.identity) return;
    const now = new V1MicroTime();
    const body: V1Lease = {
      ...lease,
      // No holder and a 1 s duration: the next replica takes it at its next attempt.
      spec: {
        leaseDurationSeconds: 1,
        renewTime: now,
        acquireTime: now,
        leaseTransitions: lease.spec.leaseTransitions,
      },
    };
    try {
      await this.api.replaceNamespacedLease({ namespace: this.opts.namespace, name: this.opts.name, body });
      this.log.info('released the lease');
    } catch (err) {
      // Someone else wrote the lease since our last renew: it is not ours to clear any more.
      this.log.warn({ err: errorMessage(err) }, 'could not release the lease');
    }
  }

  private specFor(now: V1MicroTime) {
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      renewTime: now,
    };
  }

  private remember(lease: V1Lease): void {
    this.lease = lease;
    const record = `${lease.spec?.holderIdentity ?? ''}|${String(lease.spec?.renewTime ?? '')}`;
    if (record !== this.observed.record) this.observed = { record, atMs: Date.now() };
  }

  private heldByOther(): boolean {
    const holder = this.lease?.spec?.holderIdentity;
    return !!holder && holder !== this.identity;
  }

  private expired(leaseDurationSeconds: number | undefined): boolean {
    const durationMs = (leaseDurationSeconds ?? Math.ceil(this.leaseDurationMs / 1000)) * 1000;
    return Date.now() >= this.observed.atMs + durationMs;
  }

  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.stopController.signal }).catch(() => undefined);
  }
}
