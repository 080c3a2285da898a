import { z } from 'zod';

/**
 * Pieces shared by ForensicCase and ResponsePolicy: a policy's response is a case template,
 * so both use these exact schemas. The CRDs in crds/ are generated from them
 * (scripts/gen-crds.ts); a unit test fails if the two drift.
 */

export const GROUP = 'forensics.amber.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label');
const dnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a DNS-1123 subdomain');

export const NamespaceName = dnsLabel;
export const ObjectName = dnsSubdomain;

export const Containment = z
  .object({
    isolateNetwork: z
      .boolean()
      .default(true)
      .describe('Create a deny-all ingress and egress NetworkPolicy that selects the suspect pod alone.'),
    detachFromWorkload: z
      .boolean()
      .default(true)
      .describe(
        "Change the labels the owner's selector and Services match, so the workload replaces the pod and traffic stops reaching it.",
      ),
    cordonNode: z
      .boolean()
      .default(true)
      .describe("Cordon the suspect's node: nothing new is scheduled there."),
    taintNode: z
      .boolean()
      .default(true)
      .describe("Taint the suspect's node NoSchedule (never NoExecute, which would evict the evidence)."),
    labelNode: z.boolean().default(true).describe("Label the suspect's node as held by a case."),
    restoreLabelsOnRelease: z
      .boolean()
      .default(false)
      .describe("On release, put the pod's original labels back, so it rejoins its Service."),
    deletePodAfterSeal: z
      .boolean()
      .default(false)
      .describe('Delete the suspect pod once its evidence is sealed. Never done unless asked.'),
  })
  .describe('How the suspect pod and its node are contained.');

export const ARTIFACT_GROUPS = [
  'processes',
  'network',
  'memory',
  'filesystemDiff',
  'writableLayer',
  'fullExport',
  'checkpoint',
  'logs',
  'orchestrator',
  'packetCapture',
  'image',
  'volumeSnapshots',
] as const;
export const ArtifactGroup = z.enum(ARTIFACT_GROUPS);

const mib = (what: string) =>
  `${what}, in MiB, so a hostile container cannot fill the store or stall the collector.`;

export const Collection = z
  .object({
    enabled: z.boolean().default(true).describe('Collect evidence; false contains the pod only.'),
    artifacts: z
      .array(ArtifactGroup)
      .max(ARTIFACT_GROUPS.length)
      .default([
        'processes',
        'network',
        'filesystemDiff',
        'writableLayer',
        'logs',
        'orchestrator',
        'image',
        'volumeSnapshots',
      ])
      .describe(
        "Artifact groups to collect: processes, network, memory (process memory dumps), filesystemDiff, writableLayer (the container's upper layer as a tar), fullExport, checkpoint, logs, orchestrator (the API server's view), packetCapture (the pod's traffic for captureSeconds, from inside its network namespace), image (the image's manifest, config and layers from the node's containerd, checked against the pod status's image ID), volumeSnapshots (a CSI VolumeSnapshot of each PersistentVolumeClaim the pod mounts whose driver has a VolumeSnapshotClass, taken by the operator as soon as the pod is pinned, never deleted by Amber).",
      ),
    maxMemoryMiB: z.number().int().min(0).max(1_048_576).default(512).describe(mib('Cap on memory dumped')),
    maxFileMiB: z
      .number()
      .int()
      .min(0)
      .max(1_048_576)
      .default(256)
      .describe(mib('Cap on one collected file')),
    maxTotalMiB: z
      .number()
      .int()
      .min(1)
      .max(10_485_760)
      .default(4096)
      .describe(mib('Cap on everything collected from one container')),
    captureSeconds: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe(
        "How long the packet capture (packetCapture) records the pod's traffic; it runs alongside the rest of the collection.",
      ),
    maxCaptureMiB: z
      .number()
      .int()
      .min(1)
      .max(1_048_576)
      .default(64)
      .describe(mib('Cap on the packet capture (whole packets; a flood is cut at the cap)')),
    maxImageLayersMiB: z
      .number()
      .int()
      .min(0)
      .max(1_048_576)
      .default(512)
      .describe(mib("Cap on the image's layers copied together (0: index, manifest and config only)")),
    runtime: z
      .enum(['containerd', 'cri-o', 'docker'])
      .optional()
      .describe("Container runtime on the node; detected from the pod's containerID when absent."),
    timeoutSeconds: z
      .number()
      .int()
      .min(10)
      .max(86_400)
      .default(600)
      .describe('Seconds the collection Job may run before it is recorded as failed.'),
  })
  .describe('What the node collector gathers.');

export const Evidence = z
  .object({
    store: z
      .object({
        type: z
          .enum(['s3', 'local'])
          .default('s3')
          .describe('s3: a bucket with Object Lock; local: a directory (development only).'),
        bucket: z
          .string()
          .min(3)
          .max(63)
          .optional()
          .describe("The bucket, with Object Lock on; the operator's default bucket when absent."),
        prefix: z
          .string()
          .max(512)
          .default('amber/')
          .describe('Key prefix under which each case gets its own prefix.'),
        endpoint: z
          .string()
          .url()
          .optional()
          .describe("URL of an S3-compatible store (MinIO); the operator's endpoint, else AWS, when absent."),
        region: z.string().max(64).default('us-east-1').describe("The bucket's region."),
        path: z.string().max(4096).optional().describe('Directory, for type local.'),
      })
      .default({ type: 's3', prefix: 'amber/', region: 'us-east-1' })
      .describe('Where the evidence is written.'),
    retention: z
      .object({
        mode: z
          .enum(['COMPLIANCE', 'GOVERNANCE'])
          .default('COMPLIANCE')
          .describe(
            'Object Lock mode: COMPLIANCE cannot be shortened by anyone; GOVERNANCE can, by holders of s3:BypassGovernanceRetention.',
          ),
        days: z.number().int().min(1).max(36_500).default(365).describe('Days every object is locked for.'),
      })
      .default({ mode: 'COMPLIANCE', days: 365 })
      .describe('The Object Lock retention of every object written for the case.'),
    legalHold: z
      .boolean()
      .default(false)
      .describe('Put a legal hold on every object as well: it stays locked until the hold is lifted.'),
    signingKeyRef: z
      .object({
        namespace: NamespaceName.describe("The Secret's namespace."),
        name: ObjectName.describe("The Secret's name."),
        key: z
          .string()
          .min(1)
          .max(253)
          .default('signing-key.pem')
          .describe('The key in the Secret holding the PEM.'),
      })
      .optional()
      .describe(
        "Secret with the manifest signing key (PKCS#8 PEM); the operator's own when absent. The operator must be allowed to get it.",
      ),
  })
  .describe('Where and how evidence is sealed.');

export const Condition = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .describe('The condition, e.g. Contained, EvidenceCollected, EvidenceSealed.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe('Why the condition is in its status, one CamelCase word (e.g. PodNotFound).'),
    message: z.string().max(32_768).describe('What happened, for people.'),
    lastTransitionTime: z.string().describe('When status last changed.'),
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("The spec's metadata.generation the condition was set from."),
  })
  .describe('One aspect of the state, in the usual Kubernetes form.');
export type Condition = z.infer<typeof Condition>;

export const ObjectMeta = z
  .object({
    name: z.string(),
    generation: z.number().int().optional(),
    resourceVersion: z.string().optional(),
    uid: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    finalizers: z.array(z.string()).optional(),
    deletionTimestamp: z.string().optional(),
    creationTimestamp: z.string().optional(),
  })
  .passthrough();
