import { z } from 'zod';
import {
  Collection,
  Condition,
  Containment,
  Evidence,
  NamespaceName,
  ObjectMeta,
  ObjectName,
} from './common.js';

export const FORENSIC_CASE = {
  kind: 'ForensicCase',
  plural: 'forensiccases',
  singular: 'forensiccase',
  shortNames: ['fcase'],
} as const;

/** The Falco alert that opened the case (the first one; later ones are counted in status). */
export const TriggeringAlert = z.object({
  rule: z.string().min(1).max(1024),
  priority: z.string().min(1).max(32),
  time: z.string().max(64),
  source: z.string().max(64).default('syscalls'),
  uuid: z.string().max(64).optional(),
  hostname: z.string().max(253).optional(),
  output: z.string().max(8192).optional(),
});

/**
 * Rules the API server enforces on updates (CEL, in the generated CRD): a case is about one pod
 * for its whole life, and a released case stays released (ADR 0010).
 */
export const TARGET_IMMUTABLE_MESSAGE =
  'spec.target is immutable: a case investigates one pod for its whole life; open a new ForensicCase for another pod';
export const RELEASE_ONE_WAY_MESSAGE =
  'spec.release cannot be set back to false: a released case stays released; open a new ForensicCase to contain the pod again';

export const ForensicCaseSpec = z.object({
  target: z
    .object({
      namespace: NamespaceName,
      pod: ObjectName,
      /** Containers to collect from; all of them (sidecars included) when empty. */
      containers: z.array(z.string().min(1).max(63)).max(64).default([]),
    })
    .meta({ 'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: TARGET_IMMUTABLE_MESSAGE }] }),
  reason: z.string().min(1).max(4096),
  policyRef: z.string().max(253).optional(),
  alert: TriggeringAlert.optional(),
  containment: Containment.default(Containment.parse({})),
  collection: Collection.default(Collection.parse({})),
  evidence: Evidence.default(Evidence.parse({})),
  /** true lifts containment, for good. Evidence is never deleted by Amber. */
  release: z
    .boolean()
    .default(false)
    .meta({ 'x-kubernetes-validations': [{ rule: '!oldSelf || self', message: RELEASE_ONE_WAY_MESSAGE }] }),
});
export type ForensicCaseSpec = z.infer<typeof ForensicCaseSpec>;

export const PHASES = [
  'Pending',
  'Contained',
  'Collecting',
  'Sealed',
  /** Sealed, and the manifest says what could not be collected (status.gaps). */
  'SealedIncomplete',
  /** Someone else wrote a manifest where only the operator writes: never sealed (EvidenceTampered). */
  'Tampered',
  'Released',
  'Failed',
  'Invalid',
] as const;
export const Phase = z.enum(PHASES);
export type Phase = z.infer<typeof Phase>;

export const TIMELINE_LIMIT = 64;
export const TimelineEntry = z.object({
  time: z.string(),
  action: z.string().max(128),
  outcome: z.enum(['Succeeded', 'Failed', 'Skipped']),
  message: z.string().max(1024).optional(),
});
export type TimelineEntry = z.infer<typeof TimelineEntry>;

export const ALERTS_KEPT = 20;
export const AlertRecord = z.object({
  time: z.string().max(64),
  rule: z.string().max(1024),
  priority: z.string().max(32),
  source: z.string().max(64).optional(),
  uuid: z.string().max(64).optional(),
  output: z.string().max(2048).optional(),
});
export type AlertRecord = z.infer<typeof AlertRecord>;

export const ArtifactStatus = z.object({
  name: z.string().max(512),
  uri: z.string().max(2048),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[a-f0-9]{64}$/),
  retainUntil: z.string().optional(),
});

export const GAPS_KEPT = 64;
export const EvidenceNote = z.object({ what: z.string().max(1024), reason: z.string().max(1024) });

export const ForensicCaseStatus = z.object({
  phase: Phase.optional(),
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(Condition).max(16).optional(),
  node: z.string().max(253).optional(),
  podUID: z.string().max(64).optional(),
  containers: z
    .array(
      z.object({
        name: z.string().max(63),
        id: z.string().max(128),
        runtime: z.string().max(32),
        /** The image digest the runtime reports (containerStatuses[].imageID). */
        imageID: z.string().max(512).optional(),
      }),
    )
    .max(64)
    .optional(),
  artifacts: z.array(ArtifactStatus).max(512).optional(),
  manifest: z
    .object({
      uri: z.string().max(2048),
      sha256: z.string().max(64),
      versionId: z.string().max(1024).optional(),
    })
    .optional(),
  /** What the collection wanted and did not get (the manifest lists them all). */
  gaps: z.array(EvidenceNote).max(GAPS_KEPT).optional(),
  /** Objects under the case that nothing accounts for: recorded, never signed as evidence. */
  findings: z.array(EvidenceNote).max(GAPS_KEPT).optional(),
  alerts: z
    .object({
      count: z.number().int().min(0),
      firstSeen: z.string().optional(),
      lastSeen: z.string().optional(),
      /** Distinct rules seen, bounded. */
      rules: z.array(z.string().max(1024)).max(32),
      /** The most recent alerts, newest last; the full log is appended to the evidence store. */
      recent: z.array(AlertRecord).max(ALERTS_KEPT),
      /** Alerts past the recent window that the evidence store has not received yet. */
      dropped: z.number().int().min(0).default(0),
      /**
       * Per intake write-ahead log run, the highest log sequence number counted in `count`,
       * written in the same patch as the count: a replay after a crash skips what it covers
       * (ADR 0014). Bounded; the oldest runs go first.
       */
      logMarks: z.record(z.string().max(64), z.number().int().min(0)).optional(),
    })
    .optional(),
  timeline: z.array(TimelineEntry).max(TIMELINE_LIMIT).optional(),
  containedAt: z.string().optional(),
});
export type ForensicCaseStatus = z.infer<typeof ForensicCaseStatus>;

export const ForensicCase = z.object({
  apiVersion: z.literal('forensics.amber.io/v1alpha1'),
  kind: z.literal('ForensicCase'),
  metadata: ObjectMeta,
  spec: ForensicCaseSpec,
  status: ForensicCaseStatus.optional(),
});
export type ForensicCase = z.infer<typeof ForensicCase>;

export const CONDITION_TYPES = [
  'Valid',
  'Contained',
  'EvidenceCollected',
  'EvidenceSealed',
  'EvidenceTampered',
  'Released',
  /** Whether the deny-all NetworkPolicy can isolate the pod (False for a hostNetwork pod). */
  'NetworkIsolated',
  /** Whether the case holds its pod's node, or why not (node limit, node gone, not scheduled). */
  'NodeHeld',
  /** The pod named by spec.target is no longer the one the case pinned (a new UID, or gone). */
  'PodReplaced',
] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];
