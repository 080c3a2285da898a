import { z } from 'zod';
import { Collection, Condition, Containment, Evidence } from './common.js';

/**
 * ResponsePolicy: a GitOps-managed mapping from Falco alerts to a case template. Cluster-scoped,
 * group forensics.amber.io/v1alpha1. The CRD is generated from these schemas, so they stay plain
 * (objects, strings, enums, numbers, booleans, arrays, records; no unions).
 * How alerts are matched and what happens when several policies match: docs/adr/0005-intake.md.
 */
export const RESPONSE_POLICY = {
  kind: 'ResponsePolicy',
  plural: 'responsepolicies',
  singular: 'responsepolicy',
  shortNames: ['rpol'],
} as const;

/** Falco's priorities, lowest first: a threshold admits its own level and every level after it. */
export const FALCO_PRIORITIES = [
  'Debug',
  'Informational',
  'Notice',
  'Warning',
  'Error',
  'Critical',
  'Alert',
  'Emergency',
] as const;
export const FalcoPriority = z.enum(FALCO_PRIORITIES);
export type FalcoPriority = z.infer<typeof FalcoPriority>;

const glob = z.string().min(1).max(1024);

export const AlertMatch = z
  .object({
    /** Rule names; wildcards (`*` any text, `?` one character; ADR 0011). Empty: any rule. */
    rules: z.array(glob).max(256).default([]),
    /** The lowest Falco priority that matches. */
    minimumPriority: FalcoPriority.default('Debug'),
    /** Tags the alert must all carry. */
    tagsAllOf: z.array(z.string().min(1).max(256)).max(64).default([]),
    /** Tags of which the alert must carry at least one (when not empty). */
    tagsAnyOf: z.array(z.string().min(1).max(256)).max(64).default([]),
    /** Event sources, e.g. syscall, k8s_audit. Empty: any source. */
    sources: z.array(z.string().min(1).max(64)).max(16).default([]),
    /** Namespaces of the target pod; wildcards. Empty: any (protected namespaces still need an exact entry). */
    namespaces: z.array(glob).max(256).default([]),
    /** Namespaces never matched, even when `namespaces` includes them; wildcards. */
    excludeNamespaces: z.array(glob).max(256).default([]),
    /**
     * Output-field matchers: field name (e.g. `container.image.repository`, `proc.aname[2]`) to
     * wildcards; the field's value, as text, must match one of them. Every listed field must
     * match. `*` matches any text, `/` and spaces included; at most the first 65,536 characters
     * of a value are read, and a longer value matches any pattern with a `*` whose start fits.
     */
    outputFields: z.record(z.string().min(1).max(256), z.array(glob).min(1).max(64)).default({}),
    /**
     * k8s_audit alerts name the object of an API request, whether or not the API server allowed
     * it. When true, such an alert may act on the pod its request targeted, and only if the
     * request succeeded (`ka.response.code` 2xx, or 101 for exec/attach); when false (the
     * default) audit alerts about a pod open no case.
     */
    auditTargets: z.boolean().default(false),
  })
  .describe('Which Falco alerts the policy applies to; every criterion given must hold.');
export type AlertMatch = z.infer<typeof AlertMatch>;

export const PolicyLimits = z
  .object({
    /** Open cases this policy may have at once; past it, alerts are recorded but open nothing. */
    maxOpenCases: z.number().int().min(0).max(100_000).default(10),
    /** Nodes cordoned/tainted by open cases (any policy) past which new cases of this policy do not cordon. */
    maxCordonedNodes: z.number().int().min(0).max(100_000).default(1),
    /** Same, as a percentage of the cluster's nodes (at least one node when above 0). */
    maxCordonedNodesPercent: z.number().int().min(0).max(100).default(10),
  })
  .describe('Blast-radius limits: an attacker who triggers alerts on purpose cannot cordon the cluster.');
export type PolicyLimits = z.infer<typeof PolicyLimits>;

export const ResponsePolicySpec = z.object({
  /** Higher wins when several policies match one alert. */
  priority: z.number().int().min(-1000).max(1000).default(0),
  match: AlertMatch.default(AlertMatch.parse({})),
  /** Record what would have been done (metric, log, Event) and do nothing else. */
  dryRun: z.boolean().default(false),
  /** Repeats of one rule on one case within this window are counted but not listed again. */
  dedupWindowSeconds: z.number().int().min(0).max(86_400).default(300),
  limits: PolicyLimits.default(PolicyLimits.parse({})),
  /** The case template. */
  containment: Containment.default(Containment.parse({})),
  collection: Collection.default(Collection.parse({})),
  evidence: Evidence.default(Evidence.parse({})),
});
export type ResponsePolicySpec = z.infer<typeof ResponsePolicySpec>;

export const ResponsePolicyStatus = z.object({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(Condition).max(16).optional(),
});
export type ResponsePolicyStatus = z.infer<typeof ResponsePolicyStatus>;

export const ResponsePolicy = z.object({
  apiVersion: z.literal('forensics.amber.io/v1alpha1'),
  kind: z.literal('ResponsePolicy'),
  metadata: z.looseObject({
    name: z.string().min(1).max(253),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
    uid: z.string().optional(),
  }),
  spec: ResponsePolicySpec,
  status: ResponsePolicyStatus.optional(),
});
export type ResponsePolicy = z.infer<typeof ResponsePolicy>;
