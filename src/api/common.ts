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
    /** Deny-all ingress and egress NetworkPolicy selecting the suspect pod alone. */
    isolateNetwork: z.boolean().default(true),
    /** Change the labels the owner's selector and Services match, so the workload is replaced. */
    detachFromWorkload: z.boolean().default(true),
    cordonNode: z.boolean().default(true),
    /** NoSchedule only: NoExecute would evict the evidence. */
    taintNode: z.boolean().default(true),
    labelNode: z.boolean().default(true),
    /** On release, put the pod's original labels back (it rejoins its Service). */
    restoreLabelsOnRelease: z.boolean().default(false),
    /** Delete the suspect pod once evidence is sealed. Never done unless asked. */
    deletePodAfterSeal: z.boolean().default(false),
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
] as const;
export const ArtifactGroup = z.enum(ARTIFACT_GROUPS);

export const Collection = z
  .object({
    enabled: z.boolean().default(true),
    artifacts: z
      .array(ArtifactGroup)
      .max(ARTIFACT_GROUPS.length)
      .default(['processes', 'network', 'filesystemDiff', 'writableLayer', 'logs', 'orchestrator']),
    /** Caps, in MiB, so a hostile container cannot fill the store or stall the collector. */
    maxMemoryMiB: z.number().int().min(0).max(1_048_576).default(512),
    maxFileMiB: z.number().int().min(0).max(1_048_576).default(256),
    maxTotalMiB: z.number().int().min(1).max(10_485_760).default(4096),
    /** Container runtime on the node; detected from the pod's containerID when absent. */
    runtime: z.enum(['containerd', 'cri-o', 'docker']).optional(),
    /** Seconds the collection Job may run before it is recorded as failed. */
    timeoutSeconds: z.number().int().min(10).max(86_400).default(600),
  })
  .describe('What the node collector gathers.');

export const Evidence = z
  .object({
    store: z
      .object({
        type: z.enum(['s3', 'local']).default('s3'),
        bucket: z.string().min(3).max(63).optional(),
        prefix: z.string().max(512).default('amber/'),
        endpoint: z.string().url().optional(),
        region: z.string().max(64).default('us-east-1'),
        /** Directory, for type local. */
        path: z.string().max(4096).optional(),
      })
      .default({ type: 's3', prefix: 'amber/', region: 'us-east-1' }),
    retention: z
      .object({
        mode: z.enum(['COMPLIANCE', 'GOVERNANCE']).default('COMPLIANCE'),
        days: z.number().int().min(1).max(36_500).default(365),
      })
      .default({ mode: 'COMPLIANCE', days: 365 }),
    legalHold: z.boolean().default(false),
    signingKeyRef: z
      .object({
        namespace: NamespaceName,
        name: ObjectName,
        key: z.string().min(1).max(253).default('signing-key.pem'),
      })
      .optional(),
  })
  .describe('Where and how evidence is sealed.');

export const Condition = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32_768),
  lastTransitionTime: z.string(),
  observedGeneration: z.number().int().min(0).optional(),
});
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
