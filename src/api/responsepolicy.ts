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
  description:
    'A GitOps-managed mapping from Falco alerts to a ForensicCase template: which alerts open a case, and how that case contains, collects and seals.',
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
    rules: z
      .array(glob)
      .max(256)
      .default([])
      .describe('Rule names; wildcards (* any text, ? one character; ADR 0011). Empty: any rule.'),
    minimumPriority: FalcoPriority.default('Debug').describe(
      'The lowest Falco priority that matches: Debug, Informational, Notice, Warning, Error, Critical, Alert, Emergency.',
    ),
    tagsAllOf: z
      .array(z.string().min(1).max(256))
      .max(64)
      .default([])
      .describe('Tags the alert must all carry.'),
    tagsAnyOf: z
      .array(z.string().min(1).max(256))
      .max(64)
      .default([])
      .describe('Tags of which the alert must carry at least one (when not empty).'),
    sources: z
      .array(z.string().min(1).max(64))
      .max(16)
      .default([])
      .describe('Event sources, e.g. syscall, k8s_audit. Empty: any source.'),
    namespaces: z
      .array(glob)
      .max(256)
      .default([])
      .describe(
        'Namespaces of the target pod; wildcards. Empty: any (protected namespaces still need an exact entry).',
      ),
    excludeNamespaces: z
      .array(glob)
      .max(256)
      .default([])
      .describe('Namespaces never matched, even when namespaces includes them; wildcards.'),
    outputFields: z
      .record(z.string().min(1).max(256), z.array(glob).min(1).max(64))
      .default({})
      .describe(
        "Output-field matchers: field name (e.g. container.image.repository, proc.aname[2]) to wildcards; the field's value, as text, must match one of them. Every listed field must match. * matches any text, / and spaces included; at most the first 65,536 characters of a value are read, and a longer value matches any pattern with a * whose start fits.",
      ),
    auditTargets: z
      .boolean()
      .default(false)
      .describe(
        'k8s_audit alerts name the object of an API request, whether or not the API server allowed it. When true, such an alert may act on the pod its request targeted, and only if the request succeeded (ka.response.code 2xx, or 101 for exec/attach) and changed the pod or reached into it (ka.verb create, update, patch, delete or deletecollection, or ka.target.subresource exec, attach or portforward); when false (the default) audit alerts about a pod open no case.',
      ),
  })
  .describe('Which Falco alerts the policy applies to; every criterion given must hold.');
export type AlertMatch = z.infer<typeof AlertMatch>;

export const PolicyLimits = z
  .object({
    maxOpenCases: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(10)
      .describe('Open cases this policy may have at once; past it, alerts are recorded but open nothing.'),
    maxCordonedNodes: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(1)
      .describe(
        'Nodes cordoned/tainted by open cases (any policy) past which new cases of this policy do not cordon.',
      ),
    maxCordonedNodesPercent: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(10)
      .describe("Same, as a percentage of the cluster's nodes (at least one node when above 0)."),
  })
  .describe('Blast-radius limits: an attacker who triggers alerts on purpose cannot cordon the cluster.');
export type PolicyLimits = z.infer<typeof PolicyLimits>;

export const ResponsePolicySpec = z
  .object({
    priority: z
      .number()
      .int()
      .min(-1000)
      .max(1000)
      .default(0)
      .describe('Higher wins when several policies match one alert.'),
    match: AlertMatch.default(AlertMatch.parse({})),
    dryRun: z
      .boolean()
      .default(false)
      .describe('Record what would have been done (metric, log, Event) and do nothing else.'),
    dedupWindowSeconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(300)
      .describe('Repeats of one rule on one case within this window are counted but not listed again.'),
    limits: PolicyLimits.default(PolicyLimits.parse({})),
    containment: Containment.default(Containment.parse({})).describe(
      'The case template: how the suspect pod and its node are contained.',
    ),
    collection: Collection.default(Collection.parse({})).describe(
      'The case template: what the node collector gathers.',
    ),
    evidence: Evidence.default(Evidence.parse({})).describe(
      'The case template: where and how evidence is sealed.',
    ),
  })
  .describe('Which Falco alerts open a ForensicCase, and the case they open.');
export type ResponsePolicySpec = z.infer<typeof ResponsePolicySpec>;

export const ResponsePolicyStatus = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The metadata.generation status was built from.'),
    conditions: z
      .array(Condition)
      .max(16)
      .optional()
      .describe('InForce: whether the intake applies the policy, or why not (e.g. InvalidSpec).'),
  })
  .describe('What the operator made of the policy.');
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
