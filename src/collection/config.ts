import { z } from 'zod';
import { runtimes } from '../collector/locate.js';

/**
 * How the operator collects and seals a contained pod's evidence (ADR 0006). Operator-wide;
 * each case's spec.collection and spec.evidence choose what and where.
 */
export const CollectionConfig = z.object({
  /**
   * job: a privileged Job pinned to the suspect's node runs `amber collect` (production).
   * inline: the operator process runs the collector itself against the host it runs on, so the
   * operator must run on the suspect's node (single-node clusters, the local setup, tests).
   */
  mode: z.enum(['job', 'inline']).default('job'),
  /** The operator's namespace: collection Jobs and the default signing key live there. */
  namespace: z.string().min(1).default('amber-system'),
  /** The image with the `amber` CLI that collection Jobs run. */
  image: z.string().min(1).default('amber:latest'),
  command: z.array(z.string().min(1)).min(1).default(['amber']),
  /** Secrets in `namespace` the Jobs pull `image` with (a private registry). */
  imagePullSecrets: z.array(z.string().min(1)).default([]),
  /**
   * Unused since ADR 0009: a Secret shared by every Job let root on any suspect's node write
   * anywhere in the bucket. Jobs now get per-Job STS credentials (jobCredentials). Still
   * accepted so an existing AMBER_S3_CREDENTIALS_SECRET does not stop the operator.
   */
  s3CredentialsSecret: z.string().min(1).nullable().optional(),
  /** How collection Jobs get their write-only, prefix-scoped, short-lived S3 credentials. */
  jobCredentials: z
    .object({
      /** STS endpoint; defaults to the evidence endpoint (MinIO answers AssumeRole at its root). */
      stsEndpoint: z.url().optional(),
      /** The role assumed on AWS; MinIO ignores it (the session is its caller's, narrowed by the policy). */
      roleArn: z.string().min(20).default('arn:aws:iam::000000000000:role/amber-collector'),
      /** The role's maximum session duration (AWS: 1 h unless the role allows more). */
      maxSeconds: z.number().int().min(900).max(43_200).default(3_600),
      /**
       * The seal waits until every credential a Job took to a node has expired (ADR 0009), so
       * nothing can be written under the case after it is signed. Only tests that are about
       * something else turn this off; without it, a write after the seal fails `amber verify`.
       */
      sealAfterExpiry: z.boolean().default(true),
    })
    .prefault({}),
  /** The collector's own deadline (`amber collect`), before the Job's: report.json's time. */
  collectorDeadline: z
    .object({
      /** The option of `amber collect` that takes the deadline in seconds; null: not passed. */
      flag: z.string().startsWith('--').nullable().default('--deadline'),
      reportMarginSeconds: z.number().int().min(5).default(60),
    })
    .prefault({}),
  /**
   * Host directories a suspect's image and writable layers must lie below (ADR 0017), for both
   * modes; the collector's defaults (containerd's, CRI-O's and Docker's) when absent.
   */
  snapshotterRoots: z.array(z.string().startsWith('/')).min(1).optional(),
  /** The kubelets' pod log directory (their podLogsDir) when it is not /var/log/pods. */
  podLogsDir: z.string().startsWith('/').optional(),
  /**
   * The kubelet checkpoint request (ADR 0023): the operator asks each suspect container's kubelet
   * before its collection starts, with a 10-minute token of `serviceAccount`, whose only right is
   * create on nodes/checkpoint (never the operator's own identity: the node may be the attacker's).
   */
  checkpoint: z
    .object({
      /**
       * PEM file with the CA that signs the kubelets' serving certificates (often the cluster CA).
       * Unset: no checkpoint is requested and each case records that as a gap; the kubelet is
       * never called without verifying it.
       */
      kubeletCA: z.string().min(1).optional(),
      /** The kubelets' checkpoint directory (<kubelet --root-dir>/checkpoints). */
      checkpointsDir: z.string().startsWith('/').default('/var/lib/kubelet/checkpoints'),
      /** The kubelet's own checkpoint timeout (its `timeout` parameter), seconds. */
      timeoutSeconds: z.number().int().min(1).max(600).default(60),
      serviceAccount: z.string().min(1).max(253).default('amber-checkpoint'),
    })
    .prefault({}),
  /** Signing key Secret in the operator namespace, used when a case names none. */
  signingKeySecret: z
    .object({
      name: z.string().min(1).default('amber-signing-key'),
      key: z.string().min(1).default('signing-key.pem'),
    })
    .prefault({}),
  /** Operator-wide defaults for spec.evidence.store, and how the operator itself reaches S3. */
  evidence: z
    .object({
      bucket: z.string().min(3).max(63).optional(),
      endpoint: z.url().optional(),
      /** Path-style addressing; defaults to true when an endpoint is given (MinIO, on-premises S3). */
      forcePathStyle: z.boolean().optional(),
      /** The operator's own S3 credentials; the SDK's default chain (env, IRSA) when absent. */
      credentials: z
        .object({ accessKeyId: z.string().min(1), secretAccessKey: z.string().min(1) })
        .optional(),
      /** Root directory of local stores whose case gives no path. */
      localRoot: z.string().startsWith('/').default('/var/lib/amber/evidence'),
    })
    .prefault({}),
  /** Inline mode: where this host's /proc and file system are, and non-default runtime state roots. */
  inline: z
    .object({
      procRoot: z.string().default('/proc'),
      hostRoot: z.string().default('/'),
      /** A process in the host's namespaces (PID 1 unless the operator's PID namespace hides it). */
      hostReferencePid: z.number().int().positive().default(1),
      runtimeRoots: z.partialRecord(z.enum(runtimes), z.string().startsWith('/')).default({}),
    })
    .prefault({}),
  /** While Jobs run, look again after this long even if no Job event arrives. */
  pollMs: z.number().int().min(100).default(10_000),
  /** A timeout for each read of the orchestrator's view (a kubelet that never answers logs). */
  apiTimeoutMs: z.number().int().min(100).default(10_000),
});
export type CollectionConfig = z.output<typeof CollectionConfig>;
export type CollectionConfigInput = z.input<typeof CollectionConfig>;
