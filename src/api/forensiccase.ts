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
  description:
    'One suspect pod: Amber contains it, collects its evidence from the node and seals it in S3 under Object Lock. Opened by the intake from a Falco alert (through a ResponsePolicy) or by hand.',
} as const;

/** The Falco alert that opened the case (the first one; later ones are counted in status). */
export const TriggeringAlert = z
  .object({
    rule: z.string().min(1).max(1024).describe("The Falco rule's name."),
    priority: z.string().min(1).max(32).describe("The alert's Falco priority (e.g. Critical)."),
    time: z.string().max(64).describe('When Falco saw the event (RFC 3339).'),
    source: z.string().max(64).default('syscalls').describe('Falco event source (syscall, k8s_audit, ...).'),
    uuid: z.string().max(64).optional().describe("Falcosidekick's ID of the alert."),
    hostname: z.string().max(253).optional().describe('The node Falco ran on.'),
    output: z.string().max(8192).optional().describe("Falco's output line."),
  })
  .describe('The Falco alert that opened the case; later alerts are counted in status.alerts.');

/**
 * Rules the API server enforces on updates (CEL, in the generated CRD): a case is about one pod
 * for its whole life, and a released case stays released (ADR 0010).
 */
export const TARGET_IMMUTABLE_MESSAGE =
  'spec.target is immutable: a case investigates one pod for its whole life; open a new ForensicCase for another pod';
/** A case's name is written as a label value on its pod and NetworkPolicy: at most 63 characters. */
export const CASE_NAME_MAX = 63;
export const CASE_NAME_TOO_LONG_MESSAGE =
  'a ForensicCase name is at most 63 characters: it is written as a label value on the contained pod and its NetworkPolicy';

export const RELEASE_ONE_WAY_MESSAGE =
  'spec.release cannot be set back to false: a released case stays released; open a new ForensicCase to contain the pod again';

export const ForensicCaseSpec = z
  .object({
    target: z
      .object({
        namespace: NamespaceName.describe("The suspect pod's namespace."),
        pod: ObjectName.describe("The suspect pod's name."),
        containers: z
          .array(z.string().min(1).max(63))
          .max(64)
          .default([])
          .describe('Containers to collect from; all of them (sidecars included) when empty.'),
      })
      .meta({ 'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: TARGET_IMMUTABLE_MESSAGE }] })
      .describe('The suspect pod. Immutable: a case investigates one pod for its whole life.'),
    reason: z
      .string()
      .min(1)
      .max(4096)
      .describe(
        'Why the case was opened (the alert rule and its output, or the words of whoever opened it).',
      ),
    policyRef: z
      .string()
      .max(253)
      .optional()
      .describe('The ResponsePolicy that opened the case, if one did.'),
    alert: TriggeringAlert.optional(),
    containment: Containment.default(Containment.parse({})),
    collection: Collection.default(Collection.parse({})),
    evidence: Evidence.default(Evidence.parse({})),
    release: z
      .boolean()
      .default(false)
      .meta({ 'x-kubernetes-validations': [{ rule: '!oldSelf || self', message: RELEASE_ONE_WAY_MESSAGE }] })
      .describe(
        'true lifts containment, for good (it cannot be set back). Evidence is never deleted by Amber.',
      ),
  })
  .describe('The suspect pod, and how to contain it, collect its evidence and seal it.');
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
export const TimelineEntry = z
  .object({
    time: z.string().describe('When (RFC 3339).'),
    action: z.string().max(128).describe('What Amber did (e.g. IsolateNetwork, CordonNode, Seal).'),
    outcome: z.enum(['Succeeded', 'Failed', 'Skipped']).describe('Succeeded, Failed or Skipped.'),
    message: z.string().max(1024).optional().describe('Details, for people.'),
  })
  .describe('One step Amber took on the case.');
export type TimelineEntry = z.infer<typeof TimelineEntry>;

export const ALERTS_KEPT = 20;
export const AlertRecord = z
  .object({
    time: z.string().max(64).describe('When Falco saw the event.'),
    rule: z.string().max(1024).describe("The Falco rule's name."),
    priority: z.string().max(32).describe('Falco priority.'),
    source: z.string().max(64).optional().describe('Falco event source.'),
    uuid: z.string().max(64).optional().describe("Falcosidekick's ID of the alert."),
    output: z.string().max(2048).optional().describe("Falco's output line, cut to 2048 characters."),
  })
  .describe("A Falco alert about the case's pod.");
export type AlertRecord = z.infer<typeof AlertRecord>;

export const ArtifactStatus = z
  .object({
    name: z.string().max(512).describe('Artifact name, relative to the case.'),
    uri: z.string().max(2048).describe('Where it is stored (s3://bucket/key or file://).'),
    size: z.number().int().min(0).describe('Bytes.'),
    sha256: z
      .string()
      .regex(/^[a-f0-9]{64}$/)
      .describe('SHA-256 of the content, hex.'),
    retainUntil: z.string().optional().describe('Object Lock retain-until date.'),
  })
  .describe('One stored piece of evidence.');

/** At most this many of a pod's claims are snapshotted; the rest are recorded as skipped. */
export const SNAPSHOTS_KEPT = 16;
export const SNAPSHOT_PHASES = ['Pending', 'Ready', 'Failed', 'Skipped', 'Deleted'] as const;
export const VolumeSnapshotRecord = z
  .object({
    volume: z.string().max(63).describe("The pod's volume."),
    claim: z.string().max(253).describe('The PersistentVolumeClaim it mounts.'),
    phase: z
      .enum(SNAPSHOT_PHASES)
      .describe(
        'Pending (asked, not ready), Ready, Failed (the driver or Amber said why), Skipped (not snapshottable: why in message), Deleted (someone deleted the snapshot Amber took).',
      ),
    name: z.string().max(253).optional().describe("The VolumeSnapshot's name, in the pod's namespace."),
    uid: z.string().max(64).optional().describe("The VolumeSnapshot's UID, as Amber created it."),
    volumeSnapshotClass: z.string().max(253).optional().describe('The VolumeSnapshotClass used.'),
    driver: z.string().max(253).optional().describe("The claim's CSI driver."),
    deletionPolicy: z
      .string()
      .max(16)
      .optional()
      .describe("The class's deletionPolicy: Delete removes the storage snapshot with the object."),
    contentName: z.string().max(253).optional().describe('The bound VolumeSnapshotContent.'),
    snapshotHandle: z.string().max(1024).optional().describe("The storage system's ID of the snapshot."),
    restoreSize: z.string().max(64).optional().describe('Size of a volume restored from it.'),
    creationTime: z.string().max(64).optional().describe('When the storage system cut the snapshot.'),
    requestedAt: z.string().max(64).optional().describe('When Amber asked for it.'),
    message: z.string().max(1024).optional().describe('Why it is not ready, skipped or failed.'),
  })
  .describe("A snapshot of one of the suspect pod's volumes (never deleted by Amber).");
export type VolumeSnapshotRecord = z.infer<typeof VolumeSnapshotRecord>;

export const GAPS_KEPT = 64;
export const EvidenceNote = z
  .object({
    what: z.string().max(1024).describe('The artifact or object concerned.'),
    reason: z.string().max(1024).describe('Why.'),
  })
  .describe('Something about the evidence and why.');

const PHASE_HELP =
  'Pending, Contained, Collecting, Sealed, SealedIncomplete (sealed, with gaps), Tampered (a manifest the operator did not write: never sealed), Released, Failed, Invalid. Derived from the conditions.';

export const ForensicCaseStatus = z
  .object({
    phase: Phase.optional().describe(PHASE_HELP),
    reason: z
      .string()
      .max(1024)
      .optional()
      .describe(
        'Why the case is in its phase: the reason of the condition that decided it (e.g. NoEvidenceBucket for a Failed case, Incomplete for SealedIncomplete).',
      ),
    message: z.string().max(32_768).optional().describe("That condition's message."),
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
      .describe(
        'Valid, Contained, EvidenceCollected, EvidenceSealed, EvidenceTampered, Released, NetworkIsolated, NodeHeld, PodReplaced.',
      ),
    node: z.string().max(253).optional().describe("The suspect pod's node."),
    podUID: z.string().max(64).optional().describe('The UID of the pod the case pinned at containment.'),
    containers: z
      .array(
        z
          .object({
            name: z.string().max(63).describe("The container's name."),
            id: z.string().max(128).describe("The runtime's container ID."),
            runtime: z.string().max(32).describe('containerd, cri-o or docker.'),
            imageID: z
              .string()
              .max(512)
              .optional()
              .describe('The image digest the runtime reports (containerStatuses[].imageID).'),
          })
          .describe('A container of the suspect pod.'),
      )
      .max(64)
      .optional()
      .describe('The containers recorded at containment, by ID: evidence is about these.'),
    artifacts: z.array(ArtifactStatus).max(512).optional().describe('The evidence stored for the case.'),
    manifest: z
      .object({
        uri: z.string().max(2048).describe('Where the signed manifest is.'),
        sha256: z.string().max(64).describe('SHA-256 of the manifest, hex.'),
        versionId: z.string().max(1024).optional().describe("The manifest object's S3 version."),
      })
      .optional()
      .describe('The signed manifest (DSSE, in-toto) that seals the evidence; amber verify checks it.'),
    gaps: z
      .array(EvidenceNote)
      .max(GAPS_KEPT)
      .optional()
      .describe('What the collection wanted and did not get (the manifest lists them all).'),
    findings: z
      .array(EvidenceNote)
      .max(GAPS_KEPT)
      .optional()
      .describe('Objects under the case that nothing accounts for: recorded, never signed as evidence.'),
    alerts: z
      .object({
        count: z.number().int().min(0).describe('Alerts about the pod, the first one included.'),
        firstSeen: z.string().optional().describe('Time of the first alert.'),
        lastSeen: z.string().optional().describe('Time of the latest alert.'),
        rules: z.array(z.string().max(1024)).max(32).describe('Distinct rules seen, bounded.'),
        recent: z
          .array(AlertRecord)
          .max(ALERTS_KEPT)
          .describe('The most recent alerts, newest last; the full log is appended to the evidence store.'),
        dropped: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe('Alerts past the recent window that the evidence store has not received yet.'),
        logMarks: z
          .record(z.string().max(64), z.number().int().min(0))
          .optional()
          .describe(
            'Per intake write-ahead log run, the highest log sequence number counted in count, written in the same patch: a replay after a crash skips what it covers (ADR 0014). Bounded; the oldest runs go first.',
          ),
      })
      .optional()
      .describe("Falco alerts about the case's pod, written by the intake."),
    timeline: z
      .array(TimelineEntry)
      .max(TIMELINE_LIMIT)
      .optional()
      .describe(`The steps Amber took, oldest first; the latest ${TIMELINE_LIMIT}.`),
    containedAt: z.string().optional().describe('When containment completed.'),
    volumeSnapshots: z
      .array(VolumeSnapshotRecord)
      .max(SNAPSHOTS_KEPT + 1)
      .optional()
      .describe(
        "Snapshots of the suspect pod's PersistentVolumeClaims (collection group volumeSnapshots), taken as soon as the pod is pinned; the signed manifest carries them as they were at the seal.",
      ),
  })
  .describe('What Amber did and found; written by the operator (alerts: by the intake).');
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
