import { z } from 'zod';
import { DEFAULT_PROTECTED_NAMESPACES } from '../cases/safety.js';
import type { CollectionConfigInput } from '../collection/config.js';

/** Operator configuration: flags, then AMBER_* environment variables, then defaults. */
export const OperatorConfig = z.object({
  kubeconfig: z.string().optional(),
  namespace: z.string().min(1).default('amber-system'),
  /** Metrics, /healthz and /readyz. */
  metricsPort: z.coerce.number().int().min(0).max(65_535).default(8080),
  /** The Falcosidekick webhook; off when no token is configured. */
  intakePort: z.coerce.number().int().min(0).max(65_535).default(2801),
  intakeToken: z.string().min(16, 'the intake token must have at least 16 characters').optional(),
  intakeTlsCert: z.string().optional(),
  intakeTlsKey: z.string().optional(),
  intakeClientCa: z.string().optional(),
  leaderElection: z.boolean().default(true),
  allowKubeSystem: z.boolean().default(false),
  /**
   * Namespaces never acted on, besides Amber's own and kube-system. Setting it replaces the
   * default (Falco's and Falcosidekick's); `none` protects no further namespace.
   */
  protectedNamespaces: z.array(z.string().min(1)).default([...DEFAULT_PROTECTED_NAMESPACES]),
  workers: z.coerce.number().int().min(1).max(64).default(16),
  /** Global blast-radius limits of the intake (each ResponsePolicy has its own too). */
  maxOpenCases: z.coerce.number().int().min(0).optional(),
  maxCordonedNodes: z.coerce.number().int().min(0).optional(),
  maxCordonedNodesPercent: z.coerce.number().int().min(0).max(100).optional(),
  /** off: cases stop at Contained (containment only). */
  collectionMode: z.enum(['job', 'inline', 'off']).default('job'),
  collectorImage: z.string().min(1).optional(),
  s3Bucket: z.string().min(3).max(63).optional(),
  s3Endpoint: z.url().optional(),
  s3PathStyle: z.stringbool().optional(),
  signingKeySecret: z.string().min(1).optional(),
  /** Secret the collection Jobs take S3 credentials from; `none` for workload identity (IRSA). */
  s3CredentialsSecret: z.string().min(1).optional(),
  localEvidenceDir: z.string().startsWith('/').optional(),
  /**
   * The intake's write-ahead log (ADR 0014): a directory on a volume (each replica uses its own
   * subdirectory). Unset: accepted alerts live in memory until written, and a crash loses them.
   */
  walDir: z.string().startsWith('/').optional(),
  /** Past this size on disk the intake answers 503 log-full. */
  walMaxBytes: z.coerce
    .number()
    .int()
    .min(1024 * 1024)
    .default(128 * 1024 * 1024),
  /** This replica's subdirectory: the pod's name (POD_NAME, else the host name). */
  walName: z.string().min(1).max(253).optional(),
});
export type OperatorConfig = z.infer<typeof OperatorConfig>;

export function configFromEnv(env: NodeJS.ProcessEnv): Partial<Record<keyof OperatorConfig, unknown>> {
  const pick = (k: string) => env[`AMBER_${k}`] || undefined;
  return {
    kubeconfig: env.KUBECONFIG || undefined,
    namespace: pick('NAMESPACE') ?? env.POD_NAMESPACE,
    metricsPort: pick('METRICS_PORT'),
    intakePort: pick('INTAKE_PORT'),
    intakeToken: pick('INTAKE_TOKEN'),
    intakeTlsCert: pick('INTAKE_TLS_CERT'),
    intakeTlsKey: pick('INTAKE_TLS_KEY'),
    intakeClientCa: pick('INTAKE_CLIENT_CA'),
    protectedNamespaces: namespaceList(pick('PROTECTED_NAMESPACES')),
    maxOpenCases: pick('MAX_OPEN_CASES'),
    maxCordonedNodes: pick('MAX_CORDONED_NODES'),
    maxCordonedNodesPercent: pick('MAX_CORDONED_NODES_PERCENT'),
    collectionMode: pick('COLLECTION_MODE'),
    collectorImage: pick('COLLECTOR_IMAGE'),
    s3Bucket: pick('S3_BUCKET'),
    s3Endpoint: pick('S3_ENDPOINT'),
    s3PathStyle: pick('S3_PATH_STYLE'),
    signingKeySecret: pick('SIGNING_KEY_SECRET'),
    s3CredentialsSecret: pick('S3_CREDENTIALS_SECRET'),
    localEvidenceDir: pick('LOCAL_EVIDENCE_DIR'),
    walDir: pick('WAL_DIR'),
    walMaxBytes: pick('WAL_MAX_BYTES'),
    walName: pick('WAL_NAME') ?? (env.POD_NAME || undefined),
  };
}

/** A comma-separated list; `none` is the empty list (an empty variable means "not set"). */
function namespaceList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === 'none') return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The collection pipeline's settings, from the operator's flat configuration. */
export function collectionConfig(cfg: OperatorConfig): CollectionConfigInput | undefined {
  if (cfg.collectionMode === 'off') return undefined;
  return {
    mode: cfg.collectionMode,
    namespace: cfg.namespace,
    ...(cfg.collectorImage ? { image: cfg.collectorImage } : {}),
    ...(cfg.signingKeySecret ? { signingKeySecret: { name: cfg.signingKeySecret } } : {}),
    ...(cfg.s3CredentialsSecret
      ? { s3CredentialsSecret: cfg.s3CredentialsSecret === 'none' ? null : cfg.s3CredentialsSecret }
      : {}),
    evidence: {
      bucket: cfg.s3Bucket,
      endpoint: cfg.s3Endpoint,
      forcePathStyle: cfg.s3PathStyle,
      ...(cfg.localEvidenceDir ? { localRoot: cfg.localEvidenceDir } : {}),
    },
  };
}
