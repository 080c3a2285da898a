import { z } from 'zod';
import { DEFAULT_PROTECTED_NAMESPACES } from '../cases/safety.js';
import type { CollectionConfigInput } from '../collection/config.js';

/** A boolean from a flag (true/false) or from the environment ("true", "false", "1", "0", ...). */
const boolish = z.union([z.boolean(), z.stringbool()]);

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
  leaderElection: boolish.default(true),
  allowKubeSystem: boolish.default(false),
  /**
   * Namespaces never acted on, besides Amber's own and kube-system. Setting it replaces the
   * default (Falco's and Falcosidekick's); `none` protects no further namespace.
   */
  protectedNamespaces: z.array(z.string().min(1)).default([...DEFAULT_PROTECTED_NAMESPACES]),
  workers: z.coerce.number().int().min(1).max(64).default(16),
  /** Global blast-radius limits (each ResponsePolicy has its own too): open cases, by the intake; */
  maxOpenCases: z.coerce.number().int().min(0).optional(),
  /** nodes held, by the case reconciler from the cluster's holder annotations (ADR 0010). */
  maxCordonedNodes: z.coerce.number().int().min(0).optional(),
  maxCordonedNodesPercent: z.coerce.number().int().min(0).max(100).optional(),
  /** off: cases stop at Contained (containment only). */
  collectionMode: z.enum(['job', 'inline', 'off']).default('job'),
  collectorImage: z.string().min(1).optional(),
  /** Secrets (in the operator's namespace) the collection Jobs pull their image with. */
  collectorImagePullSecrets: z.array(z.string().min(1)).optional(),
  s3Bucket: z.string().min(3).max(63).optional(),
  s3Endpoint: z.url().optional(),
  s3PathStyle: boolish.optional(),
  signingKeySecret: z.string().min(1).optional(),
  /** Secret the collection Jobs take S3 credentials from; `none` for workload identity (IRSA). */
  s3CredentialsSecret: z.string().min(1).optional(),
  /** The role assumed to mint each collection Job's scoped credentials (ADR 0009); MinIO ignores it. */
  collectorRoleArn: z.string().min(20).optional(),
  stsEndpoint: z.url().optional(),
  localEvidenceDir: z.string().startsWith('/').optional(),
  /** The CA of the kubelets' serving certificates: without it no checkpoint is requested (ADR 0023). */
  kubeletCA: z.string().startsWith('/').optional(),
  /** The kubelets' checkpoint directory, when their --root-dir is not /var/lib/kubelet. */
  kubeletCheckpointsDir: z.string().startsWith('/').optional(),
  /** The kubelets' pod log directory, when their podLogsDir is not /var/log/pods. */
  kubeletPodLogsDir: z.string().startsWith('/').optional(),
  /** Where the nodes' snapshotters keep layers, when not containerd's, CRI-O's or Docker's default (ADR 0017). */
  snapshotterRoots: z.array(z.string().startsWith('/')).min(1).optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
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

export interface OperatorSetting {
  key: keyof OperatorConfig;
  /** The command-line flag, without its dashes. */
  flag: string;
  /** Environment variables, the first one set wins. */
  env: readonly string[];
  /** Placeholder of the flag's value; a boolean setting has none (--x / --no-x). */
  value?: string;
  help: string;
  /** A comma-separated list (`none`: the empty list). */
  list?: true;
}

/**
 * Every operator setting once: its flag, its environment variables and its help. `amber
 * operator`'s options and configFromEnv are both derived from this table, so a setting cannot be
 * reachable one way and not the other. A flag wins over the environment.
 */
export const operatorSettings: readonly OperatorSetting[] = [
  {
    key: 'kubeconfig',
    flag: 'kubeconfig',
    env: ['KUBECONFIG'],
    value: 'path',
    help: 'kubeconfig (default: in-cluster)',
  },
  {
    key: 'namespace',
    flag: 'namespace',
    env: ['AMBER_NAMESPACE', 'POD_NAMESPACE'],
    value: 'ns',
    help: "Amber's own namespace (protected; holds the leader Lease and Events)",
  },
  {
    key: 'metricsPort',
    flag: 'metrics-port',
    env: ['AMBER_METRICS_PORT'],
    value: 'port',
    help: 'port of /metrics, /healthz, /readyz',
  },
  {
    key: 'intakePort',
    flag: 'intake-port',
    env: ['AMBER_INTAKE_PORT'],
    value: 'port',
    help: 'port of the Falcosidekick webhook',
  },
  {
    key: 'intakeToken',
    flag: 'intake-token',
    env: ['AMBER_INTAKE_TOKEN'],
    value: 'token',
    help: 'bearer token Falcosidekick sends (16+ characters); the webhook is off without one. Prefer the variable: a flag shows in ps',
  },
  {
    key: 'intakeTlsCert',
    flag: 'intake-tls-cert',
    env: ['AMBER_INTAKE_TLS_CERT'],
    value: 'file',
    help: "the webhook's TLS certificate (PEM)",
  },
  {
    key: 'intakeTlsKey',
    flag: 'intake-tls-key',
    env: ['AMBER_INTAKE_TLS_KEY'],
    value: 'file',
    help: "the webhook's TLS private key (PEM)",
  },
  {
    key: 'intakeClientCa',
    flag: 'intake-client-ca',
    env: ['AMBER_INTAKE_CLIENT_CA'],
    value: 'file',
    help: 'CA the webhook requires client certificates from (mutual TLS)',
  },
  {
    key: 'leaderElection',
    flag: 'leader-election',
    env: ['AMBER_LEADER_ELECTION'],
    help: 'act only while holding the leader Lease (default: on; --no-leader-election for a single replica)',
  },
  {
    key: 'allowKubeSystem',
    flag: 'allow-kube-system',
    env: ['AMBER_ALLOW_KUBE_SYSTEM'],
    help: 'allow cases in kube-system (default: off)',
  },
  {
    key: 'protectedNamespaces',
    flag: 'protected-namespaces',
    env: ['AMBER_PROTECTED_NAMESPACES'],
    value: 'list',
    list: true,
    help: "comma-separated namespaces never acted on (default: Falco's and Falcosidekick's; none: no further one)",
  },
  {
    key: 'workers',
    flag: 'workers',
    env: ['AMBER_WORKERS'],
    value: 'n',
    help: 'concurrent reconciles (default 16)',
  },
  {
    key: 'maxOpenCases',
    flag: 'max-open-cases',
    env: ['AMBER_MAX_OPEN_CASES'],
    value: 'n',
    help: 'open cases at most, across policies',
  },
  {
    key: 'maxCordonedNodes',
    flag: 'max-cordoned-nodes',
    env: ['AMBER_MAX_CORDONED_NODES'],
    value: 'n',
    help: 'nodes Amber may hold cordoned at most',
  },
  {
    key: 'maxCordonedNodesPercent',
    flag: 'max-cordoned-nodes-percent',
    env: ['AMBER_MAX_CORDONED_NODES_PERCENT'],
    value: 'pct',
    help: 'share of the nodes Amber may hold cordoned at most',
  },
  {
    key: 'snapshotterRoots',
    flag: 'snapshotter-roots',
    env: ['AMBER_SNAPSHOTTER_ROOTS'],
    value: 'list',
    list: true,
    help: "comma-separated host directories a suspect's layers must lie below (default: containerd's, CRI-O's and Docker's)",
  },
  {
    key: 'collectionMode',
    flag: 'collection-mode',
    env: ['AMBER_COLLECTION_MODE'],
    value: 'mode',
    help: 'job (a collection Job on the node), inline (this process), off (contain only); default job',
  },
  {
    key: 'collectorImage',
    flag: 'collector-image',
    env: ['AMBER_COLLECTOR_IMAGE'],
    value: 'image',
    help: 'image of the collection Jobs',
  },
  {
    key: 'collectorImagePullSecrets',
    flag: 'collector-image-pull-secrets',
    env: ['AMBER_COLLECTOR_IMAGE_PULL_SECRETS'],
    value: 'names',
    help: "comma-separated Secrets in Amber's namespace the collection Jobs pull their image with",
    list: true,
  },
  {
    key: 's3Bucket',
    flag: 's3-bucket',
    env: ['AMBER_S3_BUCKET'],
    value: 'bucket',
    help: 'evidence bucket (Object Lock on)',
  },
  {
    key: 's3Endpoint',
    flag: 's3-endpoint',
    env: ['AMBER_S3_ENDPOINT'],
    value: 'url',
    help: 'S3 endpoint (MinIO, on-premises S3); AWS when omitted',
  },
  {
    key: 's3PathStyle',
    flag: 's3-path-style',
    env: ['AMBER_S3_PATH_STYLE'],
    help: 'path-style S3 addressing (MinIO)',
  },
  {
    key: 'signingKeySecret',
    flag: 'signing-key-secret',
    env: ['AMBER_SIGNING_KEY_SECRET'],
    value: 'name',
    help: 'Secret holding the manifest signing key',
  },
  {
    key: 's3CredentialsSecret',
    flag: 's3-credentials-secret',
    env: ['AMBER_S3_CREDENTIALS_SECRET'],
    value: 'name',
    help: 'Secret the collection Jobs take S3 credentials from; none for workload identity',
  },
  {
    key: 'collectorRoleArn',
    flag: 'collector-role-arn',
    env: ['AMBER_COLLECTOR_ROLE_ARN'],
    value: 'arn',
    help: "role assumed to mint each collection Job's scoped S3 credentials (AWS; MinIO ignores it)",
  },
  {
    key: 'stsEndpoint',
    flag: 'sts-endpoint',
    env: ['AMBER_STS_ENDPOINT'],
    value: 'url',
    help: 'STS endpoint for those credentials (default: the S3 endpoint for MinIO, AWS STS otherwise)',
  },
  {
    key: 'kubeletCA',
    flag: 'kubelet-ca',
    env: ['AMBER_KUBELET_CA'],
    value: 'file',
    help: "PEM CA of the kubelets' serving certificates, to request checkpoints (unset: none requested, a gap)",
  },
  {
    key: 'kubeletCheckpointsDir',
    flag: 'kubelet-checkpoints-dir',
    env: ['AMBER_KUBELET_CHECKPOINTS_DIR'],
    value: 'dir',
    help: "the kubelets' checkpoint directory (default /var/lib/kubelet/checkpoints)",
  },
  {
    key: 'kubeletPodLogsDir',
    flag: 'kubelet-pod-logs-dir',
    env: ['AMBER_KUBELET_POD_LOGS_DIR'],
    value: 'dir',
    help: "the kubelets' pod log directory, their podLogsDir (default /var/log/pods)",
  },
  {
    key: 'localEvidenceDir',
    flag: 'local-evidence-dir',
    env: ['AMBER_LOCAL_EVIDENCE_DIR'],
    value: 'dir',
    help: 'evidence directory instead of S3 (absolute; development only)',
  },
  {
    key: 'walDir',
    flag: 'wal-dir',
    env: ['AMBER_WAL_DIR'],
    value: 'dir',
    help: "the intake's write-ahead log (a volume; each replica uses its own subdirectory). Unset: a crash loses alerts answered 202 and not yet written",
  },
  {
    key: 'walMaxBytes',
    flag: 'wal-max-bytes',
    env: ['AMBER_WAL_MAX_BYTES'],
    value: 'bytes',
    help: 'size of the write-ahead log past which the intake answers 503 log-full (default 128 MiB)',
  },
  {
    key: 'walName',
    flag: 'wal-name',
    env: ['AMBER_WAL_NAME', 'POD_NAME'],
    value: 'name',
    help: "this replica's subdirectory of the log (default: the pod's name, else the host name)",
  },
  {
    key: 'logLevel',
    flag: 'log-level',
    env: ['AMBER_LOG_LEVEL'],
    value: 'level',
    help: 'trace, debug, info, warn, error (default info)',
  },
];

/** The camelCase name commander gives a flag's value. */
export function flagAttribute(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** The settings the environment gives, unparsed (the schema checks them). */
export function configFromEnv(env: NodeJS.ProcessEnv): Partial<Record<keyof OperatorConfig, unknown>> {
  const out: Partial<Record<keyof OperatorConfig, unknown>> = {};
  for (const s of operatorSettings) {
    // An empty variable means "not set" (a chart renders unset values as "").
    const raw = s.env.map((name) => env[name] || undefined).find((v) => v !== undefined);
    if (raw !== undefined) out[s.key] = s.list ? commaList(raw) : raw;
  }
  return out;
}

/** The settings given as flags (commander's parsed options), turned like the environment's. */
export function configFromFlags(
  flags: Record<string, unknown>,
): Partial<Record<keyof OperatorConfig, unknown>> {
  const out: Partial<Record<keyof OperatorConfig, unknown>> = {};
  for (const s of operatorSettings) {
    const v = flags[flagAttribute(s.flag)];
    if (v !== undefined) out[s.key] = s.list && typeof v === 'string' ? commaList(v) : v;
  }
  return out;
}

/** Flags over the environment over the defaults. */
export function resolveOperatorConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): ReturnType<typeof OperatorConfig.safeParse> {
  return OperatorConfig.safeParse({ ...configFromEnv(env), ...configFromFlags(flags) });
}

/** A comma-separated list; `none` is the empty list. */
function commaList(value: string): string[] {
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
    ...(cfg.collectorImagePullSecrets ? { imagePullSecrets: cfg.collectorImagePullSecrets } : {}),
    ...(cfg.snapshotterRoots?.length ? { snapshotterRoots: cfg.snapshotterRoots } : {}),
    ...(cfg.kubeletPodLogsDir ? { podLogsDir: cfg.kubeletPodLogsDir } : {}),
    ...(cfg.signingKeySecret ? { signingKeySecret: { name: cfg.signingKeySecret } } : {}),
    ...(cfg.s3CredentialsSecret
      ? { s3CredentialsSecret: cfg.s3CredentialsSecret === 'none' ? null : cfg.s3CredentialsSecret }
      : {}),
    jobCredentials: {
      ...(cfg.collectorRoleArn ? { roleArn: cfg.collectorRoleArn } : {}),
      ...(cfg.stsEndpoint ? { stsEndpoint: cfg.stsEndpoint } : {}),
    },
    checkpoint: {
      ...(cfg.kubeletCA ? { kubeletCA: cfg.kubeletCA } : {}),
      ...(cfg.kubeletCheckpointsDir ? { checkpointsDir: cfg.kubeletCheckpointsDir } : {}),
    },
    evidence: {
      bucket: cfg.s3Bucket,
      endpoint: cfg.s3Endpoint,
      forcePathStyle: cfg.s3PathStyle,
      ...(cfg.localEvidenceDir ? { localRoot: cfg.localEvidenceDir } : {}),
    },
  };
}
