import type { V1Pod } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import { hostname } from 'node:os';
import { NETWORK_QUARANTINE_LABEL } from '../containment/labels.js';
import { planSweep, type Removal, type SweepCase, type SweepPlan } from '../containment/sweep.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage, isConflict, isNotFound } from '../runtime/errors.js';
import type { KubeClients } from './client.js';

/**
 * The intake's longest delay from labelling a pod to writing its case, with margin (ADR 0027):
 * a request times out after 10 s, a failing create is retried every 10 s at most, a crashed
 * container is restarted within 5 minutes (the kubelet's back-off cap) and replays its log, and
 * a replica gone for good has its log taken over within 2.5 minutes.
 */
export const DEFAULT_SWEEP_GRACE_MS = 15 * 60_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

export interface SweeperDeps {
  clients: KubeClients;
  logger: Logger;
  registry: Registry;
  graceMs?: number;
  /** `namespace/pod` of the cases this process's intake has yet to create (none without an intake). */
  pendingPods?: () => ReadonlySet<string>;
  now?: () => number;
}

export interface SweepWorld {
  pods: V1Pod[];
  pendingPods: ReadonlySet<string>;
  cases: Map<string, SweepCase>;
}

export interface SweepResult {
  removed: Removal[];
  /** Removals refused because the pod changed (or went) since it was listed. */
  conflicts: number;
  waiting: number;
}

/**
 * Removes network-quarantine labels no ForensicCase accounts for (ADR 0027): a label the intake
 * wrote for a case that was never created or was deleted before it adopted the pod, a label
 * left naming a released case, a label someone else wrote. Runs on the leader only, as
 * gather → plan (containment/sweep.ts, pure) → apply.
 */
export class QuarantineSweeper {
  private staleSince = new Map<string, number>();
  private readonly removedTotal: Counter<'reason'>;
  private readonly graceMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly deps: SweeperDeps) {
    this.graceMs = deps.graceMs ?? DEFAULT_SWEEP_GRACE_MS;
    this.now = deps.now ?? (() => performance.now());
    this.removedTotal = new Counter({
      name: 'amber_quarantine_labels_removed_total',
      help: 'network-quarantine labels removed from pods because no ForensicCase accounted for them',
      labelNames: ['reason'],
      registers: [deps.registry],
    });
  }

  /** One pass every intervalMs while `active()` (the leader); a pass never overlaps another. */
  start(intervalMs = DEFAULT_SWEEP_INTERVAL_MS, active: () => boolean = () => true): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      if (!active()) {
        // A replica that stops leading forgets what it saw: its grace restarts if it leads again.
        this.staleSince.clear();
        return;
      }
      this.running = this.runOnce()
        .catch((err: unknown) =>
          this.deps.logger.warn({ err: errorMessage(err) }, 'quarantine sweep failed; next pass retries'),
        )
        .finally(() => (this.running = undefined));
    }, intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async runOnce(): Promise<SweepResult> {
    const world = await this.gather();
    const plan = this.plan(world);
    return this.apply(plan);
  }

  /**
   * Pods first, then the intake's waiting creates, then the cases: a label seen in the pod list
   * was written after its alert was accepted, so its case is either still waiting when the
   * intake is asked or created before the case list is read (a list is a quorum read).
   */
  async gather(): Promise<SweepWorld> {
    const pods: V1Pod[] = [];
    let next: string | undefined;
    do {
      const page = await this.deps.clients.core.listPodForAllNamespaces({
        labelSelector: NETWORK_QUARANTINE_LABEL,
        limit: 500,
        _continue: next,
      });
      pods.push(...page.items);
      next = page.metadata?._continue || undefined;
    } while (next);
    const pendingPods = new Set(this.deps.pendingPods?.() ?? []);
    const cases = new Map<string, SweepCase>();
    for (const c of (await this.deps.clients.listCases()) as SweepCase[])
      if (c.metadata?.name) cases.set(c.metadata.name, c);
    return { pods, pendingPods, cases };
  }

  plan(world: SweepWorld): SweepPlan {
    const plan = planSweep({
      ...world,
      staleSince: this.staleSince,
      now: this.now(),
      graceMs: this.graceMs,
    });
    this.staleSince = plan.staleSince;
    return plan;
  }

  async apply(plan: SweepPlan): Promise<SweepResult> {
    const removed: Removal[] = [];
    let conflicts = 0;
    for (const r of plan.removals) {
      const pod = `${r.namespace}/${r.name}`;
      try {
        await this.deps.clients.patchPod(r.namespace, r.name, r.patch);
      } catch (err) {
        // Changed since it was listed (a case adopted it, the label moved) or gone: the next
        // pass decides again from a fresh list, its grace restarted.
        if (isConflict(err) || isNotFound(err)) {
          conflicts++;
          this.deps.logger.info(
            { pod, uid: r.uid, label: r.value },
            'pod changed since the sweep read it: quarantine label left in place',
          );
          continue;
        }
        throw err;
      }
      removed.push(r);
      this.removedTotal.inc({ reason: r.reason });
      this.deps.logger.info(
        { pod, uid: r.uid, label: r.value, reason: r.reason, staleForMs: Math.round(r.staleForMs) },
        'network-quarantine label removed: no ForensicCase accounts for it',
      );
      void this.event(r);
    }
    if (plan.waiting > 0)
      this.deps.logger.debug(
        { waiting: plan.waiting, graceMs: this.graceMs },
        'network-quarantine labels no case accounts for, within the grace',
      );
    return { removed, conflicts, waiting: plan.waiting };
  }

  /** Best effort: the log line and the metric already carry the fact. */
  private async event(r: Removal): Promise<void> {
    const now = new Date();
    try {
      await this.deps.clients.core.createNamespacedEvent({
        namespace: r.namespace,
        body: {
          metadata: { generateName: `${r.name.slice(0, 200)}.`, namespace: r.namespace },
          involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: r.namespace, name: r.name, uid: r.uid },
          type: 'Normal',
          reason: 'QuarantineLabelRemoved',
          message: `label ${NETWORK_QUARANTINE_LABEL}=${r.value} removed: no ForensicCase accounts for it (${r.reason})`,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: 'amber-operator' },
          reportingComponent: 'amber-operator',
          reportingInstance: process.env.HOSTNAME ?? hostname(),
        },
      });
    } catch (err) {
      this.deps.logger.warn(
        { err: errorMessage(err), pod: `${r.namespace}/${r.name}` },
        'could not record Event',
      );
    }
  }
}
