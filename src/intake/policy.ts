import { DEFAULT_PROTECTED_NAMESPACES } from '../cases/safety.js';
import { FALCO_PRIORITIES, type FalcoPriority, type ResponsePolicySpec } from '../api/responsepolicy.js';
import type { Alert, AuditRequest, FieldValue } from './falco.js';
import { matches } from './wildcard.js';

/**
 * Pure decisions of the intake: does a policy match an alert, which policy wins, and what may be
 * done under the blast-radius limits. No I/O; tested with tables (test/unit/intake).
 */

export interface NamedPolicy {
  name: string;
  spec: ResponsePolicySpec;
}

const rank = (p: FalcoPriority): number => FALCO_PRIORITIES.indexOf(p);

/** Wildcards (`*`, `?`), linear in the value, over at most MATCH_CAP characters (wildcard.ts, ADR 0011). */
const anyGlob = (patterns: string[], value: string) => patterns.some((p) => matches(p, value));

function fieldText(v: FieldValue | undefined): string | undefined {
  if (v === undefined || v === null) return undefined;
  return String(v);
}

/**
 * Whether a policy's match criteria hold for an alert. Namespaces apply to the alert's target;
 * an alert without a target matches only policies that do not restrict namespaces.
 * `protectedNamespaces` are matched only by an exact (non-glob) entry in `namespaces`. An alert
 * whose target is the object of an audited request matches only policies with `auditTargets`.
 */
export function policyMatches(
  spec: ResponsePolicySpec,
  alert: Alert,
  protectedNamespaces: readonly string[] = [],
): boolean {
  const m = spec.match;
  if (alert.auditRequest && !m.auditTargets) return false;
  if (rank(alert.priority) < rank(m.minimumPriority)) return false;
  if (m.rules.length > 0 && !anyGlob(m.rules, alert.rule)) return false;
  if (m.sources.length > 0 && !m.sources.includes(alert.source)) return false;
  if (!m.tagsAllOf.every((t) => alert.tags.includes(t))) return false;
  if (m.tagsAnyOf.length > 0 && !m.tagsAnyOf.some((t) => alert.tags.includes(t))) return false;
  const ns = alert.target?.namespace;
  if (ns !== undefined) {
    if (protectedNamespaces.includes(ns) && !m.namespaces.includes(ns)) return false;
    if (m.namespaces.length > 0 && !anyGlob(m.namespaces, ns)) return false;
    if (anyGlob(m.excludeNamespaces, ns)) return false;
  } else if (m.namespaces.length > 0) {
    return false;
  }
  for (const [field, patterns] of Object.entries(m.outputFields)) {
    const value = fieldText(alert.fields[field]);
    if (value === undefined || !anyGlob(patterns, value)) return false;
  }
  return true;
}

/** How narrowly a policy matches: the number of criteria it sets (a tie-breaker only). */
export function specificity(spec: ResponsePolicySpec): number {
  const m = spec.match;
  return (
    (m.rules.length > 0 ? 1 : 0) +
    (m.minimumPriority !== 'Debug' ? 1 : 0) +
    (m.sources.length > 0 ? 1 : 0) +
    (m.tagsAllOf.length > 0 ? 1 : 0) +
    (m.tagsAnyOf.length > 0 ? 1 : 0) +
    (m.namespaces.length > 0 ? 1 : 0) +
    (m.excludeNamespaces.length > 0 ? 1 : 0) +
    Object.keys(m.outputFields).length
  );
}

/**
 * The policy that decides for an alert, when several match: the highest spec.priority, then the
 * most specific, then the first name in alphabetical order (so the choice never depends on the
 * order in which policies were listed).
 */
export function selectPolicy(
  policies: readonly NamedPolicy[],
  alert: Alert,
  protectedNamespaces: readonly string[] = [],
): NamedPolicy | undefined {
  let best: NamedPolicy | undefined;
  for (const p of policies) {
    if (!policyMatches(p.spec, alert, protectedNamespaces)) continue;
    if (!best || comparePolicies(p, best) < 0) best = p;
  }
  return best;
}

/** Response codes of an audited request that did what it asked: 2xx, and 101 (exec/attach upgrades). */
export function requestSucceeded(code: number | undefined): boolean {
  return code !== undefined && ((code >= 200 && code < 300) || code === 101);
}

/** Verbs of an audited request that change its target. */
const CHANGING_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
/**
 * Subresources that reach into a running pod, whatever the verb (a WebSocket exec is a GET; a GET
 * through pods/proxy reaches the pod's own HTTP endpoints).
 */
const INTO_POD_SUBRESOURCES = new Set(['exec', 'attach', 'portforward', 'proxy']);

/**
 * Whether an audited request did something to its target: changed it, or reached into the pod.
 * A read (get, list, watch) names a pod without touching it, and anyone allowed to read pods
 * could aim such an alert at an innocent one. Without a verb or subresource: fail closed.
 */
export function requestActed(audit: AuditRequest): boolean {
  // A server-side dry run changed nothing, whatever its verb.
  if (audit.dryRun) return false;
  if (audit.subresource !== undefined && INTO_POD_SUBRESOURCES.has(audit.subresource)) return true;
  return audit.verb !== undefined && CHANGING_VERBS.has(audit.verb);
}

export type MatchDecision =
  | { policy: NamedPolicy }
  | {
      policy?: undefined;
      reason:
        | 'unmatched'
        | 'protected-namespace'
        | 'audit-request-not-succeeded'
        | 'audit-request-read-only'
        | 'audit-target-not-opted-in';
      message: string;
    };

/**
 * The policy that acts on an alert with a target, or why none does. A k8s_audit alert about a
 * denied request says nothing about its target pod (an attacker can name any pod in a refused
 * request), so it is never acted on, whatever the policies say (ADR 0011).
 */
export function decideMatch(
  policies: readonly NamedPolicy[],
  alert: Alert,
  protectedNamespaces: readonly string[] = [],
): MatchDecision {
  const audit = alert.auditRequest;
  if (audit && !requestSucceeded(audit.responseCode)) {
    return {
      reason: 'audit-request-not-succeeded',
      message:
        audit.responseCode === undefined
          ? 'the audited request carries no response code (ka.response.code), so it may have been refused'
          : `the audited request was answered ${audit.responseCode}, so it did not act on its target`,
    };
  }
  if (audit && !requestActed(audit)) {
    return {
      reason: 'audit-request-read-only',
      message:
        audit.verb === undefined && audit.subresource === undefined
          ? 'the audited request carries no verb (ka.verb) or subresource, so it may only have read its target'
          : `the audited request (${audit.verb ?? 'no verb'}${audit.subresource ? ` on ${audit.subresource}` : ''}) did not change its target or reach into it`,
    };
  }
  const policy = selectPolicy(policies, alert, protectedNamespaces);
  if (policy) return { policy };
  const ns = alert.target?.namespace;
  if (ns !== undefined && protectedNamespaces.includes(ns) && selectPolicy(policies, alert)) {
    return {
      reason: 'protected-namespace',
      message: `namespace ${ns} is protected; a policy must name it exactly`,
    };
  }
  if (audit) {
    const optedIn = policies.map((p) => ({
      ...p,
      spec: { ...p.spec, match: { ...p.spec.match, auditTargets: true } },
    }));
    if (selectPolicy(optedIn, alert, protectedNamespaces))
      return {
        reason: 'audit-target-not-opted-in',
        message:
          'the alert names the target of an audited request; no matching policy sets match.auditTargets',
      };
  }
  return { reason: 'unmatched', message: 'no ResponsePolicy matches the alert' };
}

export function comparePolicies(a: NamedPolicy, b: NamedPolicy): number {
  return (
    b.spec.priority - a.spec.priority ||
    specificity(b.spec) - specificity(a.spec) ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
}

/** Global limits, from the operator's configuration (not from any policy). */
export interface GlobalLimits {
  /** Open cases opened by the intake, all policies together. */
  maxOpenCases: number;
  maxCordonedNodes: number;
  maxCordonedNodesPercent: number;
  /** Namespaces never acted on unless a policy names them exactly (Amber's own, kube-system, Falco's). */
  protectedNamespaces: string[];
}

export const DEFAULT_GLOBAL_LIMITS: GlobalLimits = {
  maxOpenCases: 50,
  maxCordonedNodes: 3,
  maxCordonedNodesPercent: 20,
  protectedNamespaces: ['kube-system', ...DEFAULT_PROTECTED_NAMESPACES],
};

/** What the limits need to know of the cases that are open right now. */
export interface OpenCasesView {
  /** Open cases opened by the intake. */
  total: number;
  /** Open cases per policy (spec.policyRef). */
  byPolicy: ReadonlyMap<string, number>;
  /** Distinct nodes that open cases cordon or taint. */
  cordonedNodes: ReadonlySet<string>;
  /** Nodes in the cluster; undefined when not known yet. */
  clusterNodes: number | undefined;
}

export type LimitDecision =
  | { action: 'open'; containment: ResponsePolicySpec['containment'] }
  | {
      action: 'degrade';
      containment: ResponsePolicySpec['containment'];
      reason: 'max-cordoned-nodes';
      message: string;
    }
  | { action: 'refuse'; reason: 'max-open-cases' | 'policy-max-open-cases'; message: string };

/** The most nodes a percentage allows: rounded down, but one node whenever the percentage is above 0. */
export function nodesAllowedByPercent(percent: number, clusterNodes: number | undefined): number {
  if (percent <= 0) return 0;
  if (clusterNodes === undefined) return 1;
  return Math.max(1, Math.floor((clusterNodes * percent) / 100));
}

/**
 * Whether a new case may open for this policy and node, and with what containment. Past the
 * open-case limits nothing opens (the alert is still counted and reported). Past the node limits
 * the case still opens, with cordon and taint turned off: the pod is still isolated and its
 * evidence collected, but no further node is taken out of scheduling (ADR 0005).
 */
export function checkLimits(
  policy: NamedPolicy,
  node: string | undefined,
  open: OpenCasesView,
  global: GlobalLimits,
): LimitDecision {
  const limits = policy.spec.limits;
  if (open.total >= global.maxOpenCases) {
    return {
      action: 'refuse',
      reason: 'max-open-cases',
      message: `${open.total} cases are open, the global limit is ${global.maxOpenCases}`,
    };
  }
  const mine = open.byPolicy.get(policy.name) ?? 0;
  if (mine >= limits.maxOpenCases) {
    return {
      action: 'refuse',
      reason: 'policy-max-open-cases',
      message: `policy ${policy.name} has ${mine} open cases, its limit is ${limits.maxOpenCases}`,
    };
  }
  const containment = policy.spec.containment;
  const touchesNode = containment.cordonNode || containment.taintNode;
  // A node already cordoned by another case costs nothing more.
  if (!touchesNode || (node !== undefined && open.cordonedNodes.has(node)))
    return { action: 'open', containment };
  const allowed = Math.min(
    limits.maxCordonedNodes,
    global.maxCordonedNodes,
    nodesAllowedByPercent(limits.maxCordonedNodesPercent, open.clusterNodes),
    nodesAllowedByPercent(global.maxCordonedNodesPercent, open.clusterNodes),
  );
  if (open.cordonedNodes.size + 1 > allowed) {
    return {
      action: 'degrade',
      containment: { ...containment, cordonNode: false, taintNode: false },
      reason: 'max-cordoned-nodes',
      message: `${open.cordonedNodes.size} nodes are cordoned, at most ${allowed} may be (cluster nodes: ${open.clusterNodes ?? 'unknown'}); the case opens without cordon and taint`,
    };
  }
  return { action: 'open', containment };
}
