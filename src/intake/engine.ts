import pLimit from 'p-limit';
import { hash } from 'node:crypto';
import { hostname } from 'node:os';
import { API_VERSION } from '../api/common.js';
import type { Logger } from '../observability/logger.js';
import { classify, errorMessage, isConflict, isNotFound } from '../runtime/errors.js';
import type { ForensicCase } from '../api/forensiccase.js';
import {
  addToDelta,
  alertRecord,
  buildCase,
  caseNameFor,
  CASE_LABELS,
  deltaApplied,
  emptyDelta,
  isOpen,
  markCovers,
  mergeAlerts,
  podKey,
  prependDelta,
  type AlertDelta,
  type CaseLike,
  type LogMarks,
} from './cases.js';
import { refusal, type SafetyConfig } from '../cases/safety.js';
import { QueueFullError } from './errors.js';
import { rfc3339ToNs, type Alert, type AlertTarget } from './falco.js';
import type { CaseApi } from './kube.js';
import type { IntakeMetrics } from './metrics.js';
import type { RecoveredRecord, WalToken } from './wal.js';
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
  | { outcome: 'opened'; case: string; policy: string; durable?: Promise<void> }
  | { outcome: 'attached'; case: string; durable?: Promise<void> }
  | { outcome: 'dry-run'; case: string; policy: string }
  | { outcome: 'not-acted'; reason: string; message: string; policy?: string };

export interface QueueLimits {
  /** Accepted alerts not yet written; past it the webhook answers 503. */
  maxQueuedAlerts: number;
  /** Cases with writes waiting; past it an alert that needs a new one gets 503. */
  maxPendingCases: number;
}

/** Where accepted alerts are made durable before the webhook answers: the write-ahead log. */
export interface Journal {
  append(record: LoggedAlert): { token: WalToken; durable: Promise<void> };
  done(tokens: readonly WalToken[]): void;
}

/** What the log keeps of an accepted alert: the decision, so a replay repeats it exactly. */
export interface LoggedAlert {
  case: string;
  target: AlertTarget;
  /** The case the alert opened, when it opened one. */
  create?: ForensicCase;
  alert: ReturnType<typeof alertRecord>;
  /**
   * Falcosidekick's uuid, else a digest of the event: the alert's identity, for tracing a replay
   * (whether it was counted is told by the case's marks, ADR 0014).
   */
  id: string;
}

export interface IntakeEngineOptions {
  api: CaseApi;
  /** Without one, accepted alerts live in memory until written (lost in a crash). */
  journal?: Journal;
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
  /**
   * Isolation first (ADR 0025): once an opening alert is in the log, the pod is isolated by the
   * intake, for a case the reconciler would not refuse. Needs the journal: without one a crash
   * before the case is written would leave a pod isolated for a case that never exists.
   */
  earlyIsolation?: {
    isolator: { isolate(caseName: string, target: AlertTarget): Promise<unknown> };
    safety: SafetyConfig;
  };
}

interface IndexedCase {
  name: string;
  podKey: string;
  open: boolean;
  fromIntake: boolean;
  policy?: string;
  /** status.alerts.logMarks as last observed. */
  marks?: LogMarks;
}

interface PendingCase {
  name: string;
  target: AlertTarget;
  /** The case to create, until it exists. */
  create?: ReturnType<typeof buildCase>;
  delta: AlertDelta;
  /** What the last write returned, so the next patch needs no read. */
  known?: { resourceVersion?: string; alerts?: NonNullable<CaseLike['status']>['alerts'] };
  /** A patch that failed without an answer: it may or may not have been applied. */
  unsure?: AlertDelta;
  /**
   * The intake is isolating the case's pod (ADR 0025): the create waits for it, so that in a
   * storm the case writes and the reconciles they start do not compete with the isolations.
   */
  isolating?: boolean;
}

const MAX_SEQ = 100;
const MAX_CONFLICT_RETRIES = 5;

export class IntakeEngine {
  private readonly api: CaseApi;
  private readonly journal: Journal | undefined;
  private readonly log: Logger;
  private readonly metrics: IntakeMetrics;
  private readonly limits: GlobalLimits;
  private readonly queueLimits: QueueLimits;
  private readonly flushIntervalMs: number;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly eventNamespace: string;
  private readonly eventIntervalMs: number;
  private readonly earlyIsolation: IntakeEngineOptions['earlyIsolation'];

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
    this.journal = opts.journal;
    this.log = opts.logger;
    this.metrics = opts.metrics;
    this.limits = { ...DEFAULT_GLOBAL_LIMITS, ...opts.limits };
    this.queueLimits = { maxQueuedAlerts: 100_000, maxPendingCases: 1_000, ...opts.queue };
    this.flushIntervalMs = opts.flushIntervalMs ?? 200;
    this.backoff = opts.backoff ?? { baseMs: 200, maxMs: 10_000 };
    this.eventNamespace = opts.eventNamespace ?? 'default';
    this.eventIntervalMs = opts.eventIntervalMs ?? 60_000;
    this.earlyIsolation = opts.journal ? opts.earlyIsolation : undefined;
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
      marks: c.status?.alerts?.logMarks,
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

  /**
   * `namespace/pod` of every case accepted (its alert in the log) and not yet created: the
   * quarantine sweep leaves their pods' labels alone (ADR 0027). A case renamed after a 409
   * stays here under its pod until its next name is created.
   */
  pendingPods(): Set<string> {
    const out = new Set<string>();
    for (const entry of this.pending.values()) if (entry.create) out.add(podKey(entry.target));
    return out;
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
      const logged = this.journal?.append(loggedAlert(openCase, target, alert));
      this.record(openCase, target, alert, policy.spec.dedupWindowSeconds, now, logged?.token);
      this.metrics.deduplicated.inc();
      return { outcome: 'attached', case: openCase, ...(logged ? { durable: logged.durable } : {}) };
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
    // Logged before anything changes: a full log refuses the alert and leaves no trace.
    const logged = this.journal?.append({ ...loggedAlert(name, target, alert), create: body });
    this.pending.set(name, { name, target, create: body, delta: emptyDelta() });
    this.cases.set(name, {
      name,
      podKey: podKey(target),
      open: true,
      fromIntake: true,
      policy: policy.name,
    });
    this.openByPod.set(podKey(target), name);
    this.record(name, target, alert, policy.spec.dedupWindowSeconds, now, logged?.token);
    this.log.info({ case: name, policy: policy.name, pod: podKey(target), rule: alert.rule }, 'opening case');
    this.writeSoon();
    const early = this.earlyIsolation;
    if (early && logged && body.spec.containment.isolateNetwork && !refusal(body, early.safety)) {
      const entry = this.pending.get(name)!;
      entry.isolating = true;
      const settled = () => {
        entry.isolating = false;
        this.writeSoon();
      };
      // Only once the record is durable: a pod is never isolated for an alert that could be lost.
      logged.durable.then(() => early.isolator.isolate(name, target)).then(settled, settled);
    }
    return {
      outcome: 'opened',
      case: name,
      policy: policy.name,
      ...(logged ? { durable: logged.durable } : {}),
    };
  }

  /**
   * Replays what the write-ahead log kept, after the informers synced: a record whose case's
   * mark covers it was counted before the crash and is only released; any other repeats its
   * decision (create the case unless it exists, count the alert). The queue limit does not
   * apply: these alerts were answered 202 already.
   */
  restore(records: readonly RecoveredRecord[], now = Date.now()): { replayed: number; counted: number } {
    let replayed = 0;
    let counted = 0;
    for (const { token, body } of records) {
      const entry = parseLogged(body);
      if (!entry) {
        this.log.warn({ log: token.log, seq: token.seq }, 'write-ahead log record not understood, skipped');
        this.journal?.done([token]);
        continue;
      }
      if (this.countedOn(entry.target, token)) {
        counted++;
        this.journal?.done([token]);
        continue;
      }
      const known = this.cases.get(entry.case);
      if (entry.create && !known && !this.pending.get(entry.case)?.create) {
        this.pending.set(entry.case, {
          name: entry.case,
          target: entry.target,
          create: entry.create,
          delta: this.pending.get(entry.case)?.delta ?? emptyDelta(),
        });
        this.observeCase(entry.create);
      }
      let alert: Alert;
      try {
        alert = { ...entry.alert, timeNs: rfc3339ToNs(entry.alert.time), tags: [], fields: {} } as Alert;
      } catch {
        alert = { ...entry.alert, timeNs: 0n, tags: [], fields: {} } as Alert;
      }
      this.record(entry.case, entry.target, alert, 0, now, token);
      replayed++;
    }
    if (records.length > 0) {
      this.log.info(
        { replayed, alreadyCounted: counted, records: records.length },
        'write-ahead log replayed',
      );
      this.writeSoon();
    }
    return { replayed, counted };
  }

  /** Counted already: some case of the pod has a mark covering the record (a case may have been renamed). */
  private countedOn(target: AlertTarget, token: WalToken): boolean {
    const key = podKey(target);
    for (const c of this.cases.values()) if (c.podKey === key && markCovers(c.marks, token)) return true;
    return false;
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
    dedupWindowSeconds: number,
    now: number,
    token?: WalToken,
  ): void {
    let entry = this.pending.get(caseName);
    if (!entry) {
      entry = { name: caseName, target, delta: emptyDelta() };
      this.pending.set(caseName, entry);
    }
    let rules = this.listedAt.get(caseName);
    if (!rules) this.listedAt.set(caseName, (rules = new Map()));
    const last = rules.get(alert.rule);
    const listed = last === undefined || now - last >= dedupWindowSeconds * 1000;
    if (listed && (rules.size < 64 || rules.has(alert.rule))) rules.set(alert.rule, now);
    addToDelta(entry.delta, alert, listed, token);
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
    for (const entry of this.pending.values()) entry.isolating = false;
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
    // New cases first, all of them, then the alert counts: containment waits on the creates
    // (except a case whose pod the intake is isolating: it is written once that settled).
    let failed = await this.writeEach(
      [...this.pending.values()].filter((e) => e.create && !e.isolating),
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
    if (entry.create && entry.isolating) return true; // written once the isolation settles
    if (entry.create) {
      const created = await this.tryCreate(entry);
      if (created !== 'done') return created === 'moved';
    }
    if (createOnly) return true;
    if (entry.delta.count === 0 && !entry.unsure) {
      this.pending.delete(entry.name);
      return true;
    }
    const delta = entry.delta;
    entry.delta = emptyDelta();
    /** The delta of the patch sent last, whose answer we wait for. */
    let attempted: AlertDelta | undefined;
    try {
      for (let attempt = 0; attempt < MAX_CONFLICT_RETRIES; attempt++) {
        attempted = undefined;
        if (!entry.known) {
          const current = await this.api.getCase(entry.name);
          entry.known = {
            resourceVersion: current.metadata?.resourceVersion,
            alerts: current.status?.alerts,
          };
        }
        let write = delta;
        if (entry.unsure) {
          if (deltaApplied(entry.known.alerts?.logMarks, entry.unsure)) {
            // The patch without an answer was applied: its alerts are counted.
            this.queued -= entry.unsure.count;
            this.journal?.done(entry.unsure.tokens);
            entry.unsure = undefined;
          } else write = prependDelta(entry.unsure, delta);
        }
        if (write.count === 0) {
          if (entry.delta.count === 0) this.pending.delete(entry.name);
          return true;
        }
        const patch = {
          metadata: { resourceVersion: entry.known.resourceVersion },
          status: { alerts: mergeAlerts(entry.known.alerts, write) },
        };
        try {
          attempted = write;
          const res = await this.api.patchCaseStatus(entry.name, patch);
          entry.known = { resourceVersion: res.metadata?.resourceVersion, alerts: res.status?.alerts };
          entry.unsure = undefined;
          this.queued -= write.count;
          this.journal?.done(write.tokens);
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
      if (classify(err) === 'terminal') {
        this.drop(entry, prependDelta(delta, entry.delta), 'rejected-by-api', err);
        return true;
      }
      if (attempted && attempted.count > 0 && attempted.tokens.length === attempted.count) {
        // No answer to the patch: it may have been applied. The case's marks will tell on the
        // next read (a patch carries the marks of its records).
        entry.unsure = attempted;
      } else entry.delta = prependDelta(attempted ?? delta, entry.delta);
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
    this.journal?.done(delta.tokens);
    if (entry.unsure) {
      this.journal?.done(entry.unsure.tokens);
      this.queued -= entry.unsure.count;
      entry.unsure = undefined;
    }
    this.queued -= delta.count;
    this.metrics.notActed.inc({ reason }, delta.count);
    this.log.error(
      { err: errorMessage(err), case: entry.name, alerts: delta.count, reason },
      'alerts could not be written',
    );
  }
}

function loggedAlert(caseName: string, target: AlertTarget, alert: Alert): LoggedAlert {
  return {
    case: caseName,
    target,
    alert: alertRecord(alert),
    id: alert.uuid ?? eventDigest(alert),
  };
}

/** An event's identity when Falcosidekick gave it no uuid (Falco's http_output gives none). */
function eventDigest(alert: Alert): string {
  return hash(
    'sha256',
    JSON.stringify([alert.time, alert.rule, alert.source, alert.hostname ?? '', alert.output ?? '']),
    'hex',
  ).slice(0, 32);
}

/** A record as the log returns it (written by this code, but checked: a disk is not a type). */
function parseLogged(body: unknown): LoggedAlert | undefined {
  const b = body as Partial<LoggedAlert> | undefined;
  if (
    typeof b?.case !== 'string' ||
    typeof b.target?.namespace !== 'string' ||
    typeof b.target.pod !== 'string' ||
    typeof b.alert?.time !== 'string' ||
    typeof b.alert.rule !== 'string'
  )
    return undefined;
  if (b.create !== undefined && b.create?.metadata?.name !== b.case) return undefined;
  return b as LoggedAlert;
}
