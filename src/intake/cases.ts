import { FINALIZER } from '../containment/labels.js';
import { createHash } from 'node:crypto';
import { API_VERSION } from '../api/common.js';
import {
  ALERTS_KEPT,
  CASE_NAME_MAX,
  ForensicCaseSpec,
  type AlertRecord,
  type ForensicCase,
  type ForensicCaseStatus,
} from '../api/forensiccase.js';
import type { ResponsePolicySpec } from '../api/responsepolicy.js';
import { rfc3339ToNs, type Alert, type AlertTarget } from './falco.js';
import type { WalToken } from './wal.js';

/** Pure helpers for the cases the intake opens and the alerts it records on them. */

/** A case name is also a label value on the pod and its NetworkPolicy (CASE_NAME_MAX). */
const MAX_NAME = CASE_NAME_MAX;
const RULES_KEPT = 32;

/**
 * The case for a pod: `<ns>-<pod>-<hash8>`, where the hash is of `ns/pod` (so truncation or a
 * dash in either name cannot make two pods share a name). `seq` > 1 names the next case of a pod
 * whose earlier case was closed. Deterministic, so a restart or a race finds the same name and
 * the API server's AlreadyExists keeps it to one case.
 */
export function caseNameFor(target: AlertTarget, seq = 1): string {
  const hash = createHash('sha256').update(`${target.namespace}/${target.pod}`).digest('hex').slice(0, 8);
  const suffix = seq > 1 ? `-${hash}-${seq}` : `-${hash}`;
  let base = `${target.namespace}-${target.pod}`.slice(0, MAX_NAME - suffix.length);
  // A cut may leave a dot or dash at the end, which a DNS subdomain may not have before the dash.
  base = base.replace(/[-.]+$/, '');
  return `${base}${suffix}`;
}

export const podKey = (t: AlertTarget) => `${t.namespace}/${t.pod}`;

/** The fields of a ForensicCase the intake reads (the rest passes through). */
export interface CaseLike {
  metadata?: { name?: string; resourceVersion?: string; labels?: Record<string, string> };
  spec?: {
    target?: { namespace?: string; pod?: string };
    policyRef?: string;
    release?: boolean;
    alert?: { hostname?: string };
    containment?: { cordonNode?: boolean; taintNode?: boolean };
  };
  status?: { phase?: string; node?: string; alerts?: ForensicCaseStatus['alerts'] };
}

/** Open: not released and not a case that was refused as invalid. New alerts attach to it. */
export function isOpen(c: CaseLike): boolean {
  return c.spec?.release !== true && c.status?.phase !== 'Released' && c.status?.phase !== 'Invalid';
}

/** Alerts gathered for one case between two writes. */
export interface AlertDelta {
  count: number;
  first?: { time: string; ns: bigint };
  last?: { time: string; ns: bigint };
  rules: Set<string>;
  /** Newest last, at most ALERTS_KEPT. */
  recent: AlertRecord[];
  /** Counted but not listed (repeats inside the dedup window, or pushed out of `recent`). */
  dropped: number;
  /** The write-ahead log records of these alerts, oldest first (none without a log). */
  tokens: WalToken[];
}

export function emptyDelta(): AlertDelta {
  return { count: 0, rules: new Set(), recent: [], dropped: 0, tokens: [] };
}

export function alertRecord(alert: Alert): AlertRecord {
  return {
    time: alert.time,
    rule: alert.rule,
    priority: alert.priority,
    source: alert.source,
    ...(alert.uuid ? { uuid: alert.uuid } : {}),
    ...(alert.output ? { output: alert.output.slice(0, 2048) } : {}),
  };
}

/** Adds one alert; `listed` false counts it without listing it (a repeat inside the window). */
export function addToDelta(d: AlertDelta, alert: Alert, listed: boolean, token?: WalToken): void {
  d.count++;
  if (token) d.tokens.push(token);
  if (!d.first || alert.timeNs < d.first.ns) d.first = { time: alert.time, ns: alert.timeNs };
  if (!d.last || alert.timeNs >= d.last.ns) d.last = { time: alert.time, ns: alert.timeNs };
  if (d.rules.size < RULES_KEPT) d.rules.add(alert.rule);
  if (!listed) {
    d.dropped++;
    return;
  }
  d.recent.push(alertRecord(alert));
  if (d.recent.length > ALERTS_KEPT) {
    d.recent.shift();
    d.dropped++;
  }
}

/** Puts an older delta (a failed write) in front of a newer one. */
export function prependDelta(older: AlertDelta, newer: AlertDelta): AlertDelta {
  const out = emptyDelta();
  out.count = older.count + newer.count;
  out.first = pick(older.first, newer.first, (a, b) => a.ns <= b.ns);
  out.last = pick(older.last, newer.last, (a, b) => a.ns > b.ns);
  for (const r of [...older.rules, ...newer.rules]) if (out.rules.size < RULES_KEPT) out.rules.add(r);
  const recent = [...older.recent, ...newer.recent];
  out.recent = recent.slice(-ALERTS_KEPT);
  out.dropped = older.dropped + newer.dropped + (recent.length - out.recent.length);
  out.tokens = [...older.tokens, ...newer.tokens];
  return out;
}

function pick<T>(a: T | undefined, b: T | undefined, aWins: (a: T, b: T) => boolean): T | undefined {
  if (!a) return b;
  if (!b) return a;
  return aWins(a, b) ? a : b;
}

type AlertsStatus = NonNullable<ForensicCaseStatus['alerts']>;
export type LogMarks = Record<string, number>;

/** Runs of the write-ahead log whose marks a case keeps; past it the oldest runs go. */
export const LOG_MARKS_KEPT = 64;

/** Per log run, the highest sequence number among the delta's records. */
export function deltaMarks(d: AlertDelta): LogMarks {
  const marks: LogMarks = {};
  for (const t of d.tokens) marks[t.log] = Math.max(marks[t.log] ?? 0, t.seq);
  return marks;
}

/** True when a case's marks say this record was counted. */
export function markCovers(marks: LogMarks | undefined, token: { log: string; seq: number }): boolean {
  const mark = marks?.[token.log];
  return mark !== undefined && mark >= token.seq;
}

/**
 * True when the case's marks cover every record of the delta: the patch that carried it was
 * applied (a delta is written whole, in one patch, together with its marks).
 */
export function deltaApplied(marks: LogMarks | undefined, d: AlertDelta): boolean {
  return d.tokens.length > 0 && d.tokens.every((t) => markCovers(marks, t));
}

function mergeMarks(current: LogMarks | undefined, d: AlertDelta): LogMarks | undefined {
  if (d.tokens.length === 0) return current;
  const out: LogMarks = { ...current };
  for (const [log, seq] of Object.entries(deltaMarks(d))) out[log] = Math.max(out[log] ?? 0, seq);
  // Run ids begin with their start time, so sorting them puts the oldest first.
  const runs = Object.keys(out).sort();
  for (const old of runs.slice(0, Math.max(0, runs.length - LOG_MARKS_KEPT))) delete out[old];
  return out;
}

/** status.alerts after adding a delta to what the case already says. */
export function mergeAlerts(current: AlertsStatus | undefined, d: AlertDelta): AlertsStatus {
  const cur: AlertsStatus = current ?? { count: 0, rules: [], recent: [], dropped: 0 };
  const earlier = (a: string | undefined, b: string | undefined) => pickTime(a, b, (x, y) => x <= y);
  const later = (a: string | undefined, b: string | undefined) => pickTime(a, b, (x, y) => x >= y);
  const rules = [...cur.rules];
  for (const r of d.rules) if (!rules.includes(r) && rules.length < RULES_KEPT) rules.push(r);
  const recent = [...cur.recent, ...d.recent];
  const kept = recent.slice(-ALERTS_KEPT);
  const logMarks = mergeMarks(cur.logMarks, d);
  return {
    count: cur.count + d.count,
    ...optional('firstSeen', earlier(cur.firstSeen, d.first?.time)),
    ...optional('lastSeen', later(cur.lastSeen, d.last?.time)),
    rules,
    recent: kept,
    dropped: (cur.dropped ?? 0) + d.dropped + (recent.length - kept.length),
    ...(logMarks ? { logMarks } : {}),
  };
}

function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, string>);
}

function pickTime(
  a: string | undefined,
  b: string | undefined,
  aWins: (x: bigint, y: bigint) => boolean,
): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const x = safeNs(a);
  const y = safeNs(b);
  if (x === undefined) return b;
  if (y === undefined) return a;
  return aWins(x, y) ? a : b;
}

/** Times written by someone else may not parse; they then lose to ours. */
function safeNs(time: string): bigint | undefined {
  try {
    return rfc3339ToNs(time);
  } catch {
    return undefined;
  }
}

export const CASE_LABELS = {
  'app.kubernetes.io/managed-by': 'amber',
  'forensics.amber.io/source': 'falco',
} as const;

/** The ForensicCase the intake opens for an alert under a policy (validated against the CRD's schema). */
export function buildCase(args: {
  name: string;
  alert: Alert & { target: AlertTarget };
  policy: { name: string; spec: ResponsePolicySpec };
  containment: ResponsePolicySpec['containment'];
  degraded?: string;
}): ForensicCase {
  const { name, alert, policy, containment, degraded } = args;
  const spec = ForensicCaseSpec.parse({
    target: { namespace: alert.target.namespace, pod: alert.target.pod, containers: [] },
    reason: `Falco rule "${alert.rule.slice(0, 512)}" (${alert.priority}) matched ResponsePolicy ${policy.name}`,
    policyRef: policy.name,
    alert: {
      rule: alert.rule,
      priority: alert.priority,
      time: alert.time,
      source: alert.source,
      ...(alert.uuid ? { uuid: alert.uuid } : {}),
      ...(alert.hostname ? { hostname: alert.hostname } : {}),
      ...(alert.output ? { output: alert.output.slice(0, 8192) } : {}),
    },
    containment,
    collection: policy.spec.collection,
    evidence: policy.spec.evidence,
    release: false,
  });
  return {
    apiVersion: API_VERSION,
    kind: 'ForensicCase',
    metadata: {
      name,
      labels: { ...CASE_LABELS },
      // Born with the release finalizer: the case controller need not add it (one write less
      // between the alert and the isolated pod).
      finalizers: [FINALIZER],
      ...(degraded ? { annotations: { 'forensics.amber.io/degraded': degraded.slice(0, 1024) } } : {}),
    },
    spec,
  };
}
