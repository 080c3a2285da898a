import { Option, type Command } from 'commander';
import { isIP } from 'node:net';
import {
  artifactGroups,
  collectContainer,
  defaultGroups,
  type ArtifactGroup,
  type CollectOptions,
} from '../collector/collect.js';
import { runtimes } from '../collector/locate.js';
import { LocalEvidenceStore } from '../evidence/local-store.js';
import { retentionModeSchema } from '../evidence/retention.js';
import { S3EvidenceStore, createS3Client } from '../evidence/s3-store.js';
import type { EvidenceStore } from '../evidence/store.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { exitCodesHelp, exitFailed, exitOk, exitUsage } from './exit.js';

export interface CollectCliOptions {
  containerId: string;
  runtime: string;
  runtimeRoot?: string;
  case: string;
  pod?: string;
  namespace?: string;
  podUid?: string;
  containerName?: string;
  node?: string;
  storeDir?: string;
  bucket?: string;
  prefix?: string;
  endpoint?: string;
  region: string;
  pathStyle: boolean;
  retentionMode: string;
  retentionPeriod: string;
  legalHold: boolean;
  groups?: string;
  fullRootfs: boolean;
  memory: boolean;
  maxFileSize?: string;
  maxLayerSize?: string;
  maxMemorySize?: string;
  maxProcessFilesSize?: string;
  procRoot: string;
  hostRoot: string;
  hostPid: string;
  podLogsRoot?: string;
  checkpointsRoot?: string;
  image?: string;
  imageId?: string;
  specImage?: string;
  imageContentRoot?: string[];
  captureSeconds?: string;
  maxCaptureSize?: string;
  maxImageSize?: string;
  checkpointArchive?: string;
  checkpointRefused?: string;
  cutConnections?: string;
  snapshotterRoot?: string[];
  terminationMessagePath: string;
  deadline?: string;
  stepTimeout?: string;
}

/** Exit status: 0 collected (gaps are in the report), 1 container not found or report not stored, 2 bad usage. */
export const exitCollected = exitOk;
export const exitNotCollected = exitFailed;
export { exitUsage };

/** `amber collect`: what the node-pinned collection Job runs, from the host side of the container. */
export function registerCollectCommand(program: Command): void {
  program
    .command('collect')
    .description(
      'collect a container from its node (processes, executables, deleted files and memfds, sockets, memory, ' +
        'writable-layer diff and tar, targeted files, exposure, pod logs, kubelet checkpoint) into the evidence store',
    )
    .requiredOption('--container-id <id>', "container ID: 64 hex, Falco's 12-hex short ID, or runtime://<id>")
    .requiredOption('--case <name>', 'case ID (the ForensicCase name) the artifacts are filed under')
    .addOption(
      new Option('--runtime <runtime>', 'container runtime').choices([...runtimes, 'auto']).default('auto'),
    )
    .option(
      '--runtime-root <dir>',
      "the runtime's state directory (e.g. runc --root) instead of the defaults",
    )
    .option('--pod <name>', 'pod name (for its logs and checkpoint)')
    .option('--namespace <ns>', 'pod namespace (for its logs and checkpoint)')
    .option('--pod-uid <uid>', "the pod's UID: only its kubelet log directory is collected")
    .option('--container-name <name>', 'container name in the pod (logs and checkpoint of that one only)')
    .option('--node <name>', 'node name recorded with each artifact', process.env.NODE_NAME)
    .option('--store-dir <dir>', 'local evidence directory (instead of S3)')
    .option('--bucket <bucket>', 'S3 bucket with Object Lock', process.env.AMBER_EVIDENCE_BUCKET)
    .option('--prefix <prefix>', 'S3 key prefix', process.env.AMBER_EVIDENCE_PREFIX ?? '')
    .option('--endpoint <url>', 'S3 endpoint (MinIO, on-premises S3)', process.env.AMBER_S3_ENDPOINT)
    .option('--region <region>', 'S3 region', process.env.AWS_REGION ?? 'us-east-1')
    .option('--path-style', 'path-style S3 addressing (MinIO)', process.env.AMBER_S3_PATH_STYLE === 'true')
    .addOption(
      new Option('--retention-mode <mode>', 'Object Lock mode')
        .choices(retentionModeSchema.options)
        .default('COMPLIANCE'),
    )
    .option('--retention-period <period>', 'Object Lock retention, e.g. 90d, 7y', '90d')
    .option('--legal-hold', 'put a legal hold on every artifact', false)
    .option(
      '--groups <list>',
      `comma-separated artifact groups (default: all but fullRootfs and packetCapture): ${artifactGroups.join(',')}`,
    )
    .option('--full-rootfs', 'also export the whole merged root file system', false)
    .option('--no-memory', 'do not dump process memory')
    .option('--max-file-size <size>', 'largest single file copied, e.g. 512Mi')
    .option('--max-layer-size <size>', 'cap of the writable-layer tar, e.g. 20Gi')
    .option('--max-memory-size <size>', 'cap of all memory dumps together, e.g. 8Gi')
    .option(
      '--max-process-files-size <size>',
      'cap of all executables, deleted files and memfds copied together, e.g. 4Gi',
    )
    .option('--capture-seconds <seconds>', 'how long the packet capture runs (packetCapture group)')
    .option('--max-capture-size <size>', 'cap of the packet capture, whole packets only, e.g. 64Mi')
    .option('--image <ref>', "the container's image reference, as the pod status gives it")
    .option(
      '--image-id <id>',
      "the container's image ID, as the pod status gives it (repo@sha256:… or sha256:…)",
    )
    .option(
      '--spec-image <ref>',
      "the container's image as the pod spec names it (API server): a pinned @sha256 digest is checked against the image ID",
    )
    .option(
      '--image-content-root <dir...>',
      "containerd content stores the image's blobs are read from (default: next to the snapshotter roots)",
    )
    .option(
      '--max-image-size <size>',
      "cap of the image's layers copied together, e.g. 512Mi (0: manifest and config only)",
    )
    .option('--proc-root <dir>', 'where the host /proc is mounted', '/proc')
    .option('--host-pid <pid>', "a PID in the host's namespaces, to compare the container's with", '1')
    .option(
      '--host-root <dir>',
      "where the host's file system is mounted (for overlay layers, logs, runtime state)",
      '/',
    )
    .option(
      '--cut-connections <addresses>',
      "after reading the socket table, delete these pod addresses' tracked connections in the host's network namespace (comma-separated)",
    )
    .option('--pod-logs-root <dir>', 'kubelet pod log directory, under the host root')
    .option('--checkpoints-root <dir>', 'kubelet checkpoint directory, under the host root')
    .option(
      '--checkpoint-archive <path>',
      "the archive the kubelet named when asked to checkpoint this container: collected if it lies directly in --checkpoints-root with the kubelet's name shape",
    )
    .option(
      '--checkpoint-refused <answer>',
      "the kubelet's answer when it did not checkpoint this container: recorded as the checkpoint's gap",
    )
    .option(
      '--snapshotter-root <dir...>',
      "host directories the container's layers must lie below (default: containerd's, CRI-O's and Docker's overlay snapshot directories)",
    )
    .option(
      '--deadline <seconds>',
      'seconds from start by which the report is stored, whatever is left (the Job sets it below its activeDeadlineSeconds)',
    )
    .option(
      '--step-timeout <seconds>',
      'the most one artifact (a file, a tar, a process memory) may take',
      '300',
    )
    .option(
      '--termination-message-path <file>',
      'where to write the short summary the pod status shows',
      '/dev/termination-log',
    )
    .addHelpText(
      'after',
      exitCodesHelp({
        ok: 'collected and stored (what could not be collected is listed as gaps in report.json)',
        failed: 'the container was not found, or the report could not be stored',
        usage: 'usage error, or no usable evidence store (nothing was collected)',
      }),
    )
    .action(async (options: CollectCliOptions) => {
      process.exitCode = await runCollect(options, createLogger({ command: 'collect' }));
    });
}

export async function runCollect(cli: CollectCliOptions, logger: Logger): Promise<number> {
  const registry = createRegistry();
  let store: EvidenceStore;
  let options: CollectOptions;
  try {
    store = createStore(cli, registry, logger);
    options = toCollectOptions(cli);
  } catch (err) {
    process.stderr.write(`amber collect: ${(err as Error).message}\n`);
    return exitUsage;
  }
  const result = await collectContainer(options, store, { registry, logger });
  process.stdout.write(`${result.summary}\n`);
  return result.ok ? exitCollected : exitNotCollected;
}

export function toCollectOptions(cli: CollectCliOptions): CollectOptions {
  let groups = cli.groups
    ? cli.groups
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean)
        .map((g) => {
          if (!(artifactGroups as readonly string[]).includes(g))
            throw new Error(`unknown artifact group "${g}"; known: ${artifactGroups.join(', ')}`);
          return g as ArtifactGroup;
        })
    : defaultGroups;
  if (cli.fullRootfs && !groups.includes('fullRootfs')) groups = [...groups, 'fullRootfs'];
  if (!cli.memory) groups = groups.filter((g) => g !== 'memory');
  const caps: NonNullable<CollectOptions['caps']> = {};
  if (cli.maxFileSize) caps.maxFileBytes = parseSize(cli.maxFileSize);
  if (cli.maxLayerSize) caps.maxWritableLayerBytes = parseSize(cli.maxLayerSize);
  if (cli.maxMemorySize) caps.maxMemoryBytesTotal = parseSize(cli.maxMemorySize);
  if (cli.maxProcessFilesSize) caps.maxProcessFilesBytes = parseSize(cli.maxProcessFilesSize);
  if (cli.maxCaptureSize) caps.maxCaptureBytes = parseSize(cli.maxCaptureSize);
  if (cli.maxImageSize !== undefined) caps.maxImageLayerBytes = parseSize(cli.maxImageSize);
  if (cli.checkpointArchive && cli.checkpointRefused)
    throw new Error('give either --checkpoint-archive or --checkpoint-refused, not both');
  return {
    caseId: cli.case,
    containerId: cli.containerId,
    runtime: cli.runtime as CollectOptions['runtime'],
    groups,
    caps,
    procRoot: cli.procRoot,
    hostRoot: cli.hostRoot,
    hostReferencePid: Number(cli.hostPid),
    terminationMessagePath: cli.terminationMessagePath || null,
    ...(cli.deadline !== undefined && { deadlineSeconds: parseSeconds('--deadline', cli.deadline) }),
    ...(cli.stepTimeout !== undefined && {
      stepTimeoutSeconds: parseSeconds('--step-timeout', cli.stepTimeout),
    }),
    ...(cli.runtimeRoot && { runtimeRoot: cli.runtimeRoot }),
    ...(cli.pod && { pod: cli.pod }),
    ...(cli.namespace && { namespace: cli.namespace }),
    ...(cli.podUid && { podUid: cli.podUid }),
    ...(cli.containerName && { containerName: cli.containerName }),
    ...(cli.node && { node: cli.node }),
    ...(cli.podLogsRoot && { podLogsRoot: cli.podLogsRoot }),
    ...(cli.checkpointsRoot && { checkpointsRoot: cli.checkpointsRoot }),
    ...(cli.captureSeconds !== undefined && {
      captureSeconds: parseSeconds('--capture-seconds', cli.captureSeconds),
    }),
    ...(cli.image && { image: cli.image }),
    ...(cli.imageId && { imageId: cli.imageId }),
    ...(cli.specImage && { specImage: cli.specImage }),
    ...(cli.imageContentRoot?.length && { imageContentRoots: cli.imageContentRoot }),
    ...(cli.checkpointArchive && { checkpoint: { archive: cli.checkpointArchive } }),
    ...(cli.checkpointRefused && { checkpoint: { refused: cli.checkpointRefused } }),
    ...(cli.cutConnections && { cutConnectionsOf: addresses(cli.cutConnections) }),
    ...(cli.snapshotterRoot?.length && { snapshotterRoots: cli.snapshotterRoot }),
  };
}

function addresses(list: string): string[] {
  const out = list
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  for (const a of out) if (isIP(a) === 0) throw new Error(`--cut-connections: not an IP address: "${a}"`);
  return out;
}

function createStore(
  cli: CollectCliOptions,
  registry: ReturnType<typeof createRegistry>,
  logger: Logger,
): EvidenceStore {
  if (cli.storeDir && cli.bucket) throw new Error('give either --store-dir or --bucket, not both');
  if (cli.storeDir) return new LocalEvidenceStore({ root: cli.storeDir, registry, logger });
  if (!cli.bucket)
    throw new Error(
      'no evidence store: give --store-dir <dir> or --bucket <bucket> (or AMBER_EVIDENCE_BUCKET)',
    );
  const client = createS3Client({
    region: cli.region,
    forcePathStyle: cli.pathStyle,
    ...(cli.endpoint && { endpoint: cli.endpoint }),
  });
  return new S3EvidenceStore({
    client,
    bucket: cli.bucket,
    prefix: cli.prefix,
    retention: {
      mode: retentionModeSchema.parse(cli.retentionMode),
      period: cli.retentionPeriod,
      legalHold: cli.legalHold,
    },
    registry,
    logger,
  });
}

function parseSeconds(flag: string, s: string): number {
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s.trim()) || !(n > 0))
    throw new Error(`${flag}: expected a positive number of seconds, got "${s}"`);
  return n;
}

const sizeUnits: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
};

/** Kubernetes-style sizes: 1048576, 512Mi, 2Gi, 500M. */
export function parseSize(s: string): number {
  const m = /^(\d+)([kmgt]i?)?b?$/i.exec(s.trim());
  const unit = sizeUnits[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) throw new Error(`invalid size "${s}": expected e.g. 1048576, 512Mi, 2Gi`);
  return Number(m[1]) * unit;
}
