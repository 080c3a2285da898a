import pLimit from 'p-limit';
import { hostname } from 'node:os';
import { API_VERSION } from '../api/common.js';
import type { Logger } from '../observability/logger.js';
import { classify, errorMessage, isConflict, isNotFound } from '../runtime/errors.js';
import {
  addToDelta,
  buildCase,
  caseNameFor,
  CASE_LABELS,
  emptyDelta,
  isOpen,
  mergeAlerts,
  podKey,
  prependDelta,
  type AlertDelta,
  type CaseLike,
} from './cases.js';
import { QueueFullError } from './errors.js';
import type { Alert, AlertTarget } from './falco.js';
import type { CaseApi } from './kube.js';
import type { IntakeMetrics } from './metrics.js';
import {
  checkLimits,
  decideMatch,
  DEFAULT_GLOBAL_LIMITS,
  type GlobalLimits,
  type NamedPolicy,
  type OpenCasesView,
} from './policy.js';

/**
 * The intake's state between the webhook and the API server. `accept` decides synchronously
 * (policies, dedup, limits) from in-memory indexes, so the webhook answers in microseconds;
 * writes are coalesced per case and flushed every flushIntervalMs as one create and/or one
 * conditional status merge patch, retried in order with backoff while the API server is away.
 */

export type AcceptOutcome =
  | { outcome: 'opened'; case: string; policy: string }
  | { outcome: 'attached'; case: string }
  | { outcome: 'dry-run'; case: string; policy: string }
  | { outcome: 'not-acted'; reason: string; message: string; policy?: string };

export interface QueueLimits {
  /** Accepted alerts not yet written; past it the webhook answers 503. */
  maxQueuedAlerts: number;
  /** Cases with writes waiting; past it an alert that needs a new one gets 503. */
  maxPendingCases: number;
}

export interface IntakeEngineOptions {
  api: CaseApi;
  logger: Logger;
  metrics: IntakeMetrics;
  limits?: Partial<GlobalLimits>;
  queue?: Partial<QueueLimits>;
  flushIntervalMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  /** Where Events about cluster-scoped objects go (Kubernetes puts them in `default`). */
  eventNamespace?: string;
  /** At most one Event per (object, reason) in this long; metrics count every occurrence. */
  eventIntervalMs?: number;
}

interface IndexedCase {
  name: string;
  podKey: string;
  open: boolean;
  fromIntake: boolean;
  policy?: string;
}

interface PendingCase {
  name: string;
  target: AlertTarget;
  /** The case to create, until it exists. */
  create?: ReturnType<typeof buildCase>;
  delta: AlertDelta;
  /** What the last write returned, so the next patch needs no read. */
  known?: { resourceVersion?: string; alerts?: NonNullable<CaseLike['status']>['alerts'] };
}

const MAX_SEQ = 100;
const MAX_CONFLICT_RETRIES = 5;

export class IntakeEngine {
  private readonly api: CaseApi;
  private readonly log: Logger;
  private readonly metrics: IntakeMetrics;
  private readonly limits: GlobalLimits;
  private readonly queueLimits: QueueLimits;
  private readonly flushIntervalMs: number;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly eventNamespace: string;
  private readonly eventIntervalMs: number;

  private policies: NamedPolicy[] = [];
  private readonly cases = new Map<string, IndexedCase>();
  private readonly openByPod = new Map<string, string>();
  private clusterNodes: number | undefined;

  private readonly pending = new Map<string, PendingCase>();
  private queued = 0;
  /** case -> rule -> when it was last listed in `recent` (the dedup window). */
  private readonly listedAt = new Map<string, Map<string, number>>();
  private readonly eventSentAt = new Map<string, number>();

  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Asked to flush while a pass was running: run another right after it. */
  private flushAgain = false;
  private writeScheduled = false;
  /** Case writes in flight at once. */
  private readonly writers = pLimit(16);
  private failures = 0;
  private retryAt = 0;

  constructor(opts: IntakeEngineOptions) {
    this.api = opts.api;
    this.log = opts.logger;
    this.metrics = opts.metrics;
    this.limits = { ...DEFAULT_GLOBAL_LIMITS, ...opts.limits };
    this.queueLimits = { maxQueuedAlerts: 100_000, maxPendingCases: 1_000, ...opts.queue };
    this.flushIntervalMs = opts.flushIntervalMs ?? 200;
    this.backoff = opts.backoff ?? { baseMs: 200, maxMs: 10_000 };
    this.eventNamespace = opts.eventNamespace ?? 'default';
    this.eventIntervalMs = opts.eventIntervalMs ?? 60_000;
  }

  // ---- inputs from the informers ----

  setPolicies(policies: NamedPolicy[]): void {
    this.policies = [...policies];
  }

  /** The policies in force, by name (what the informer delivered and validated). */
  policyNames(): string[] {
    return this.policies.map((p) => p.name);
  }

  setClusterNodes(count: number): void {
    this.clusterNodes = count;
  }

  /** A case as the API server has it (informer add/update, or a read after AlreadyExists). */
  observeCase(c: CaseLike): void {
    const name = c.metadata?.name;
    const ns = c.spec?.target?.namespace;
    const pod = c.spec?.target?.pod;
    if (!name || !ns || !pod) return;
    const key = `${ns}/${pod}`;
    const open = isOpen(c);
    this.cases.set(name, {
      name,
      podKey: key,
      open,
      fromIntake:
        c.metadata?.labels?.['forensics.amber.io/source'] === CASE_LABELS['forensics.amber.io/source'],
      policy: c.spec?.policyRef,
    });
    const current = this.openByPod.get(key);
    if (open && (current === undefined || !this.cases.get(current)?.open)) this.openByPod.set(key, name);
    if (!open && current === name) this.openByPod.delete(key);
  }

  forgetCase(name: string): void {
    const c = this.cases.get(name);
    this.cases.delete(name);
    this.listedAt.delete(name);
    if (c && this.openByPod.get(c.podKey) === name) this.openByPod.delete(c.podKey);
  }

  // ---- the webhook's side ----

  get queueDepth(): number {
    return this.queued;
  }

  /** Decides what an accepted alert leads to. Throws QueueFullError when it cannot be kept. */
  accept(alert: Alert, now = Date.now()): AcceptOutcome {
    if (!alert.target) return this.notActed('no-target', alert.noTargetReason ?? 'no target');
    const target = alert.target;
    const matched = decideMatch(this.policies, alert, this.limits.protectedNamespaces);
    if (!matched.policy) {
      if (matched.reason.startsWith('audit-'))
        this.log.debug({ rule: alert.rule, pod: podKey(target), reason: matched.reason }, matched.message);
      return this.notActed(matched.reason, matched.message);
    }
    const policy = matched.policy;
    this.metrics.matched.inc({ policy: policy.name });

    const openCase = this.openByPod.get(podKey(target));
    if (openCase) {
      this.reserve(openCase, 1);
      this.record(openCase, target, alert, policy, now);
      this.metrics.deduplicated.inc();
      return { outcome: 'attached', case: openCase };
    }

    const name = this.nextName(target);
    if (policy.spec.dryRun) {
      const message = `dry run: would open case ${name} for pod ${podKey(target)} (rule "${alert.rule}")`;
      this.log.info(
        { policy: policy.name, case: name, rule: alert.rule, pod: podKey(target) },
        'dry run: case not opened',
      );
      this.event({ kind: 'ResponsePolicy', name: policy.name }, 'Normal', 'DryRun', message, now);
      this.metrics.notActed.inc({ reason: 'dry-run' });
      return { outcome: 'dry-run', case: name, policy: policy.name };
    }

    // Only the open-case limits are the intake's. The node limit is decided by the case
    // reconciler from the nodes Amber holds when it contains the pod (ADR 0010): an alert's
    // hostname is the attacker's word, and Falco's k8s_audit source reports its own host.
    const decision = checkLimits(policy, undefined, this.openView(), this.limits);
    if (decision.action === 'refuse') {
      this.log.warn({ policy: policy.name, pod: podKey(target), reason: decision.reason }, decision.message);
      this.event(
        { kind: 'ResponsePolicy', name: policy.name },
        'Warning',
        'LimitReached',
        `alert for ${podKey(target)} not acted on: ${decision.message}`,
        now,
      );
      return this.notActed(decision.reason, decision.message, policy.name);
    }

    this.reserve(name, 1);
    const body = buildCase({
      name,
      alert: { ...alert, target },
      policy,
      containment: policy.spec.containment,
    });
    this.pending.set(name, { name, target, create: body, delta: emptyDelta() });
    this.cases.set(name, {
      name,
      podKey: podKey(target),
      open: true,
      fromIntake: true,
      policy: policy.name,
    });
    this.openByPod.set(podKey(target), name);
    this.record(name, target, alert, policy, now);
    this.log.info({ case: name, policy: policy.name, pod: podKey(target), rule: alert.rule }, 'opening case');
    this.writeSoon();
    return { outcome: 'opened', case: name, policy: policy.name };
  }

  private notActed(reason: string, message: string, policy?: string): AcceptOutcome {
    this.metrics.notActed.inc({ reason });
    return { outcome: 'not-acted', reason, message, ...(policy ? { policy } : {}) };
  }

  /** Makes room for `alerts` more alerts of a case, or refuses before anything changed. */
  private reserve(caseName: string, alerts: number): void {
    if (this.queued + alerts > this.queueLimits.maxQueuedAlerts) {
      throw new QueueFullError(
        `${this.queued} alerts are waiting for the API server (limit ${this.queueLimits.maxQueuedAlerts})`,
      );
    }
    if (!this.pending.has(caseName) && this.pending.size >= this.queueLimits.maxPendingCases) {
      throw new QueueFullError(
        `${this.pending.size} cases are waiting for the API server (limit ${this.queueLimits.maxPendingCases})`,
      );
    }
  }

  private record(
    caseName: string,
    target: AlertTarget,
    alert: Alert,
    policy: NamedPolicy,
    now: number,
  ): void {
    let entry = this.pending.get(caseName);
    if (!entry) {
      entry = { name: caseName, target, delta: emptyDelta() };
      this.pending.set(caseName, entry);
    }
    let rules = this.listedAt.get(caseName);
    if (!rules) this.listedAt.set(caseName, (rules = new Map()));
    const last = rules.get(alert.rule);
    const listed = last === undefined || now - last >= policy.spec.dedupWindowSeconds * 1000;
    if (listed && (rules.size < 64 || rules.has(alert.rule))) rules.set(alert.rule, now);
    addToDelta(entry.delta, alert, listed);
    this.queued++;
    this.metrics.queueDepth.set(this.queued);
  }

  private nextName(target: AlertTarget): string {
    for (let seq = 1; seq < MAX_SEQ; seq++) {
      const name = caseNameFor(target, seq);
      if (!this.cases.has(name)) return name;
    }
    return caseNameFor(target, MAX_SEQ);
  }

  private openView(): OpenCasesView {
    let total = 0;
    const byPolicy = new Map<string, number>();
    for (const c of this.cases.values()) {
      if (!c.open) continue;
      if (c.fromIntake) total++;
      if (c.policy) byPolicy.set(c.policy, (byPolicy.get(c.policy) ?? 0) + 1);
    }
    return { total, byPolicy, cordonedNodes: new Set(), clusterNodes: this.clusterNodes };
  }

  private event(
    object: { kind: string; name: string },
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    now: number,
  ): void {
    const key = `${object.kind}/${object.name}/${reason}`;
    const last = this.eventSentAt.get(key);
    if (last !== undefined && now - last < this.eventIntervalMs) return;
    if (this.eventSentAt.size > 10_000) this.eventSentAt.clear();
    this.eventSentAt.set(key, now);
    const time = new Date(now).toISOString();
    const body = {
      metadata: { generateName: 'amber-intake-', namespace: this.eventNamespace },
      involvedObject: { apiVersion: API_VERSION, kind: object.kind, name: object.name },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: 'amber-intake', host: hostname() },
      reportingComponent: 'amber-intake',
      reportingInstance: hostname(),
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
    // Events are best effort: the metric and the log already carry the fact.
    this.api.createEvent(this.eventNamespace, body).catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err), reason }, 'could not record an Event');
    });
  }

  // ---- the API server's side ----

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.flushIntervalMs);
  }

  /** Stops the timer and flushes what is waiting, for at most `drainMs`. */
  async stop(drainMs = 5_000): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const deadline = Date.now() + drainMs;
    while (this.pending.size > 0 && Date.now() < deadline) {
      this.retryAt = 0;
      await this.flush();
      if (this.pending.size > 0)
        await new Promise((r) =>
          setTimeout(r, Math.min(this.flushIntervalMs, Math.max(0, deadline - Date.now()))),
        );
    }
    await this.flushing;
    if (this.queued > 0)
      this.log.error({ alerts: this.queued, cases: this.pending.size }, 'stopping with alerts not written');
  }

  /** One pass over the waiting cases, oldest first; stops at the first failure and backs off. */
  flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    if (Date.now() < this.retryAt) return Promise.resolve();
    this.flushing = this.flushPass().finally(() => {
      this.flushing = undefined;
      this.metrics.queueDepth.set(this.queued);
      if (this.flushAgain) {
        this.flushAgain = false;
        void this.flush();
      }
    });
    return this.flushing;
  }

  /**
   * A new case is written at once: containment waits on it. Alerts for open cases wait for the
   * timer, which is what coalesces an alert storm into one write per case.
   */
  private writeSoon(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      void this.flush();
    });
  }

  /**
   * Writes the waiting cases, oldest first and several at once (one case's writes stay in
   * order); after a failure no further case is started, and the pass backs off.
   */
  private async flushPass(): Promise<void> {
    // New cases first, all of them, then the alert counts: containment waits on the creates.
    let failed = await this.writeEach(
      [...this.pending.values()].filter((e) => e.create),
      true,
    );
    if (!failed) failed = await this.writeEach([...this.pending.values()], false);
    if (failed) {
      const delayMs = Math.min(this.backoff.baseMs * 2 ** this.failures, this.backoff.maxMs);
      this.failures++;
      this.retryAt = Date.now() + delayMs;
      this.log.warn(
        { case: failed.name, queued: this.queued, delayMs },
        'API server writes failing, retrying later',
      );
      return;
    }
    this.failures = 0;
  }

  /** Writes entries, several at once; the first that fails is returned and no further one starts. */
  private async writeEach(entries: PendingCase[], createOnly: boolean): Promise<PendingCase | undefined> {
    let failed: PendingCase | undefined;
    await Promise.all(
      entries.map((entry) =>
        this.writers(async () => {
          if (failed || this.pending.get(entry.name) !== entry) return;
          let ok: boolean;
          try {
            ok = await this.flushEntry(entry, createOnly);
          } catch (err) {
            this.log.warn({ err: errorMessage(err), case: entry.name }, 'write failed');
            ok = false;
          }
          if (!ok) failed ??= entry;
        }),
      ),
    );
    return failed;
  }

  /** True when the entry is done or made progress; false on a failure worth retrying later. */
  private async flushEntry(entry: PendingCase, createOnly = false): Promise<boolean> {
    if (entry.create) {
      const created = await this.tryCreate(entry);
      if (created !== 'done') return created === 'moved';
    }
    if (createOnly) return true;
    if (entry.delta.count === 0) {
      this.pending.delete(entry.name);
      return true;
    }
    const delta = entry.delta;
    entry.delta = emptyDelta();
    try {
      for (let attempt = 0; attempt < MAX_CONFLICT_RETRIES; attempt++) {
        if (!entry.known) {
          const current = await this.api.getCase(entry.name);
          entry.known = {
            resourceVersion: current.metadata?.resourceVersion,
            alerts: current.status?.alerts,
          };
        }
        const patch = {
          metadata: { resourceVersion: entry.known.resourceVersion },
          status: { alerts: mergeAlerts(entry.known.alerts, delta) },
        };
        try {
          const res = await this.api.patchCaseStatus(entry.name, patch);
          entry.known = { resourceVersion: res.metadata?.resourceVersion, alerts: res.status?.alerts };
          this.queued -= delta.count;
          return true;
        } catch (err) {
          if (!isConflict(err)) throw err;
          entry.known = undefined; // someone else wrote the case: read it again and merge anew
        }
      }
      entry.delta = prependDelta(delta, entry.delta);
      return true; // contention, not an outage: try again on the next pass
    } catch (err) {
      entry.known = undefined;
      if (isNotFound(err)) {
        // The case was deleted by a person: these alerts have nowhere to go.
        this.drop(entry, prependDelta(delta, entry.delta), 'case-deleted', err);
        return true;
      }
      entry.delta = prependDelta(delta, entry.delta);
      if (classify(err) === 'terminal') {
        this.drop(entry, entry.delta, 'rejected-by-api', err);
        return true;
      }
      throw err;
    }
  }

  /** 'done': the case exists and is open; 'moved': renamed to the pod's next case; otherwise a failure. */
  private async tryCreate(entry: PendingCase): Promise<'done' | 'moved' | 'failed'> {
    const body = entry.create!;
    try {
      const created = await this.api.createCase(body);
      entry.create = undefined;
      entry.known = { resourceVersion: created.metadata?.resourceVersion, alerts: created.status?.alerts };
      this.log.info({ case: entry.name, pod: podKey(entry.target) }, 'case opened');
      return 'done';
    } catch (err) {
      if (isConflict(err)) {
        // Opened already (a restart, another replica): attach to it if open, else use the next name.
        const existing = await this.api.getCase(entry.name);
        this.observeCase(existing);
        if (isOpen(existing)) {
          entry.create = undefined;
          entry.known = {
            resourceVersion: existing.metadata?.resourceVersion,
            alerts: existing.status?.alerts,
          };
          this.metrics.deduplicated.inc();
          return 'done';
        }
        const next = this.nextName(entry.target);
        this.pending.delete(entry.name);
        const moved: PendingCase = {
          ...entry,
          name: next,
          create: { ...body, metadata: { ...body.metadata, name: next } },
          known: undefined,
        };
        this.pending.set(next, moved);
        this.observeCase(moved.create!);
        this.listedAt.set(next, this.listedAt.get(entry.name) ?? new Map());
        return 'moved';
      }
      if (classify(err) === 'terminal') {
        this.drop(entry, entry.delta, 'rejected-by-api', err);
        this.forgetCase(entry.name);
        return 'moved';
      }
      this.log.warn({ err: errorMessage(err), case: entry.name }, 'could not create case yet');
      return 'failed';
    }
  }

  private drop(entry: PendingCase, delta: AlertDelta, reason: string, err: unknown): void {
    this.pending.delete(entry.name);
    this.queued -= delta.count;
    this.metrics.notActed.inc({ reason }, delta.count);
    this.log.error(
      { err: errorMessage(err), case: entry.name, alerts: delta.count, reason },
      'alerts could not be written',
    );
  }
}
