import type { V1Job } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type { Collection } from '../api/common.js';
import type { z } from 'zod';
import type { CheckpointRequest } from '../collector/checkpoint.js';
import { artifactGroups, type ArtifactGroup, type CollectOptions } from '../collector/collect.js';
import { runtimes, type Runtime } from '../collector/locate.js';
import { artifactSegment } from '../collector/logs.js';
import { CASE_LABEL } from '../containment/labels.js';
import { ownerReference } from '../containment/network-policy.js';
import type { ResolvedStore } from './store.js';

export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const CONTAINER_LABEL = 'forensics.amber.io/container';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'amber' } as const;
/** Where the collection Job sees the node's root file system. */
export const HOST_ROOT = '/host';
const MiB = 1024 * 1024;

/** One running container of the suspect pod, to be collected from its node. */
export interface CollectionTarget {
  name: string;
  /** The ID without its runtime:// scheme. */
  id: string;
  /** The runtime named by the containerID scheme (containerd, cri-o, docker, ...). */
  runtime: string;
  /** The image reference and image ID the pod status gives: the image evidence starts there. */
  image?: string;
  imageID?: string;
  /** The image the pod spec names (from the API server): a digest there is checked (image.ts). */
  specImage?: string;
}

/** The suspect pod as the collection sees it. */
export interface CollectionPod {
  namespace: string;
  name: string;
  node: string;
  /** The UID pinned at containment: the collector reads this pod's kubelet logs, not a namesake's. */
  uid?: string;
  /**
   * The pod's addresses whose tracked connections the collector cuts once it has read the
   * socket table (the case isolates the network and the pod has its own network namespace).
   */
  cutConnections?: string[];
}

export interface CaseIdentity {
  name: string;
  uid: string;
}

/**
 * `amber-collect-<case>-<container>-<hash>`, at most 63 characters (the Job name is copied to a
 * label on its pods). The hash of case name, case UID and container keeps names distinct when
 * truncation makes two alike, and keeps a re-created case of the same name from adopting an
 * older case's Job.
 */
export function collectionJobName(kase: CaseIdentity, container: string): string {
  const hash = createHash('sha256').update(`${kase.name}/${kase.uid}/${container}`).digest('hex').slice(0, 8);
  const readable = `amber-collect-${kase.name}-${container}`
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63 - hash.length - 1)
    .replace(/-+$/, '');
  return `${readable}-${hash}`;
}

/** The collector's runtime: the case's choice, else the pod's containerID scheme, else auto-detect. */
export function collectorRuntime(
  target: CollectionTarget,
  spec: z.infer<typeof Collection>,
): Runtime | 'auto' {
  if (spec.runtime) return spec.runtime;
  return (runtimes as readonly string[]).includes(target.runtime) ? (target.runtime as Runtime) : 'auto';
}

/**
 * The case's artifact groups in the collector's terms. `orchestrator` and `volumeSnapshots` are the
 * operator's own part;
 * the targeted files (/tmp, shell histories, ...) always go with the file system groups.
 */
export function collectorGroups(spec: z.infer<typeof Collection>): ArtifactGroup[] {
  const wanted = new Set<ArtifactGroup>();
  for (const g of spec.artifacts) {
    if (g === 'fullExport') wanted.add('fullRootfs');
    else if (g === 'orchestrator' || g === 'volumeSnapshots') continue;
    else wanted.add(g);
    if (g === 'filesystemDiff' || g === 'writableLayer' || g === 'fullExport') wanted.add('targetedFiles');
  }
  if (spec.maxMemoryMiB === 0) wanted.delete('memory');
  return artifactGroups.filter((g) => wanted.has(g));
}

/** What the collector is asked for one container: the same for a Job and for inline mode. */
export function collectRequest(
  kase: CaseIdentity,
  pod: { namespace: string; name: string; node: string; uid?: string },
  target: CollectionTarget,
  spec: z.infer<typeof Collection>,
  checkpoint?: { request?: CheckpointRequest; checkpointsRoot: string },
  podLogsRoot?: string,
): CollectOptions {
  return {
    ...(podLogsRoot && { podLogsRoot }),
    ...(checkpoint?.request && { checkpoint: checkpoint.request }),
    ...(checkpoint && { checkpointsRoot: checkpoint.checkpointsRoot }),
    caseId: kase.name,
    containerId: target.id,
    runtime: collectorRuntime(target, spec),
    namespace: pod.namespace,
    pod: pod.name,
    ...(pod.uid && { podUid: pod.uid }),
    containerName: target.name,
    node: pod.node,
    groups: collectorGroups(spec),
    ...(target.image && { image: target.image }),
    ...(target.imageID && { imageId: target.imageID }),
    ...(target.specImage && { specImage: target.specImage }),
    captureSeconds: spec.captureSeconds,
    caps: {
      maxCaptureBytes: Math.max(1, spec.maxCaptureMiB * MiB),
      maxImageLayerBytes: spec.maxImageLayersMiB * MiB,
      maxFileBytes: Math.max(1, spec.maxFileMiB * MiB),
      maxWritableLayerBytes: spec.maxTotalMiB * MiB,
      maxRootfsBytes: spec.maxTotalMiB * MiB,
      maxMemoryBytesTotal: Math.max(1, spec.maxMemoryMiB * MiB),
      maxProcessFilesBytes: spec.maxTotalMiB * MiB,
    },
  };
}

/** `amber collect` flags for a request, and the store flags of the case's evidence store. */
export function collectorArgs(req: CollectOptions, store: Extract<ResolvedStore, { type: 's3' }>): string[] {
  const caps = req.caps ?? {};
  const args = [
    'collect',
    '--container-id',
    req.containerId,
    '--runtime',
    req.runtime ?? 'auto',
    '--case',
    req.caseId,
    '--pod',
    req.pod ?? '',
    '--namespace',
    req.namespace ?? '',
    ...(req.podUid ? ['--pod-uid', req.podUid] : []),
    '--container-name',
    req.containerName ?? '',
    '--node',
    req.node ?? '',
    '--groups',
    (req.groups ?? []).join(','),
    // /proc is the host's: the Job shares the host PID namespace.
    '--proc-root',
    '/proc',
    '--host-root',
    HOST_ROOT,
    '--termination-message-path',
    '/dev/termination-log',
    '--bucket',
    store.bucket,
    '--prefix',
    store.prefix,
    '--region',
    store.region,
    '--retention-mode',
    store.retention.mode,
    '--retention-period',
    store.retention.period,
  ];
  if (caps.maxFileBytes) args.push('--max-file-size', String(caps.maxFileBytes));
  if (caps.maxWritableLayerBytes) args.push('--max-layer-size', String(caps.maxWritableLayerBytes));
  if (caps.maxMemoryBytesTotal) args.push('--max-memory-size', String(caps.maxMemoryBytesTotal));
  if (caps.maxProcessFilesBytes) args.push('--max-process-files-size', String(caps.maxProcessFilesBytes));
  if (!req.groups?.includes('memory')) args.push('--no-memory');
  if (req.image) args.push('--image', req.image);
  if (req.imageId) args.push('--image-id', req.imageId);
  if (req.specImage) args.push('--spec-image', req.specImage);
  if (req.captureSeconds !== undefined) args.push('--capture-seconds', String(req.captureSeconds));
  if (caps.maxCaptureBytes) args.push('--max-capture-size', String(caps.maxCaptureBytes));
  if (caps.maxImageLayerBytes !== undefined) args.push('--max-image-size', String(caps.maxImageLayerBytes));
  if (req.checkpointsRoot) args.push('--checkpoints-root', req.checkpointsRoot);
  if (req.podLogsRoot) args.push('--pod-logs-root', req.podLogsRoot);
  if (req.checkpoint && 'archive' in req.checkpoint)
    args.push('--checkpoint-archive', req.checkpoint.archive);
  if (req.checkpoint && 'refused' in req.checkpoint)
    args.push('--checkpoint-refused', req.checkpoint.refused);
  if (store.endpoint) args.push('--endpoint', store.endpoint);
  if (store.forcePathStyle) args.push('--path-style');
  if (store.retention.legalHold) args.push('--legal-hold');
  return args;
}

export interface CollectionJobInput {
  kase: CaseIdentity;
  /** The operator's namespace: the Job never runs in the suspect's namespace. */
  namespace: string;
  pod: CollectionPod;
  target: CollectionTarget;
  collection: z.infer<typeof Collection>;
  store: Extract<ResolvedStore, { type: 's3' }>;
  image: string;
  /** Secrets in `namespace` to pull `image` with. */
  imagePullSecrets?: readonly string[];
  command: string[];
  /** How the collector's own deadline is passed, and how long before the Job's it falls. */
  collectorDeadline: CollectorDeadline;
  /** Where the node's snapshotter keeps layers, when not where the collector looks by default. */
  snapshotterRoots?: string[];
  /** The kubelet's answer to the checkpoint request for this container, and its checkpoints directory. */
  checkpoint?: { request?: CheckpointRequest; checkpointsRoot: string };
  /** The kubelets' pod log directory, when their podLogsDir is not /var/log/pods. */
  podLogsRoot?: string;
}

export interface CollectorDeadline {
  /** The `amber collect` option that takes seconds (e.g. `--deadline`); null: not passed. */
  flag: string | null;
  /** Seconds left between the collector's deadline and the Job's, to write and upload report.json. */
  reportMarginSeconds: number;
}

/**
 * The collector stops reading at its own deadline and still writes report.json; the Job is
 * killed at activeDeadlineSeconds. The margin between them is the report's time, but never more
 * than half the run (a 10-second case still collects for 5).
 */
export function collectorDeadlineSeconds(jobDeadlineSeconds: number, marginSeconds: number): number {
  return jobDeadlineSeconds - Math.min(marginSeconds, Math.floor(jobDeadlineSeconds / 2));
}

/** The per-Job Secret with the Job's own scoped S3 credentials (ADR 0009): named like its Job. */
export function jobCredentialsSecretName(jobName: string): string {
  return jobName;
}

/**
 * The Job that collects one container from the host side of its node. Everything in it is
 * there because the collector needs it; each field says why.
 */
export function collectionJob(input: CollectionJobInput): V1Job {
  const { kase, target, pod } = input;
  const labels = {
    ...MANAGED_BY,
    [COMPONENT_LABEL]: 'collector',
    // Label values are <= 63 characters; the case name is in the ownerReference in full.
    [CASE_LABEL]: labelValue(kase.name),
    [CONTAINER_LABEL]: labelValue(target.name),
  };
  const req = collectRequest(kase, pod, target, input.collection, input.checkpoint, input.podLogsRoot);
  const name = collectionJobName(kase, target.name);
  const deadline = input.collection.timeoutSeconds;
  const args = collectorArgs(req, input.store);
  if (pod.cutConnections?.length) args.push('--cut-connections', pod.cutConnections.join(','));
  for (const root of input.snapshotterRoots ?? []) args.push('--snapshotter-root', root);
  if (input.collectorDeadline.flag)
    args.push(
      input.collectorDeadline.flag,
      String(collectorDeadlineSeconds(deadline, input.collectorDeadline.reportMarginSeconds)),
    );
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: input.namespace,
      labels,
      ownerReferences: [ownerReference(kase)],
    },
    spec: {
      // No retry: a second run would find its artifacts' names taken (evidence is never
      // overwritten) and the container has changed since; one report of what happened is better.
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      activeDeadlineSeconds: deadline,
      // Created suspended: its credentials Secret is owned by the Job, so it can only be made
      // once the Job exists; the operator resumes the Job when the Secret is there.
      suspend: true,
      // ttlSecondsAfterFinished is left unset: the operator reads the result before anything
      // removes the Job; the Job goes with its case (ownerReference).
      template: {
        metadata: { labels },
        spec: {
          // On the suspect's node, whatever the scheduler thinks: the node is cordoned by us.
          nodeName: pod.node,
          restartPolicy: 'Never',
          // Tolerate every taint, ours (NoSchedule) included, and without tolerationSeconds, so
          // no NoExecute taint (unreachable, not-ready, ...) can evict the collector mid-way.
          tolerations: [{ operator: 'Exists' }],
          // The suspect's processes, /proc/<pid>/{root,mem,fd,exe} and its network namespace
          // are only visible from the host's PID namespace.
          hostPID: true,
          // The collector talks to the store, not to the Kubernetes API.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          // A private image on a node the operator does not run on needs its own pull secret.
          ...(input.imagePullSecrets?.length
            ? { imagePullSecrets: input.imagePullSecrets.map((name) => ({ name })) }
            : {}),
          containers: [
            {
              name: 'collector',
              image: input.image,
              command: input.command,
              args,
              // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN: write-only, this
              // container's prefix only, short-lived (ADR 0009). Root on the node can read them.
              envFrom: [{ secretRef: { name: jobCredentialsSecretName(name) } }],
              env: [
                { name: 'NODE_NAME', value: pod.node },
                // A read the suspect wedges in the kernel holds one of libuv's file-system
                // threads; with the default 4 all wedged, even report.json would starve (ADR 0008).
                // It must be set before the process starts, hence here.
                { name: 'UV_THREADPOOL_SIZE', value: '64' },
              ],
              securityContext: {
                // Privileged, because reading another process's memory, descriptors and root
                // needs CAP_SYS_PTRACE with an LSM profile that allows ptrace-read of a process
                // outside its own profile (RuntimeDefault AppArmor does not); overlay opaque
                // markers are trusted.* xattrs (CAP_SYS_ADMIN); files of every owner need
                // CAP_DAC_READ_SEARCH; /proc must not be masked.
                privileged: true,
                runAsUser: 0,
                // The collector writes nothing locally: artifacts stream to the store.
                readOnlyRootFilesystem: true,
              },
              // The collector writes its summary here; the operator reads it from the pod status.
              terminationMessagePath: '/dev/termination-log',
              terminationMessagePolicy: 'File',
              // Memory is constant (streaming); bounded so a hostile container cannot make it grow.
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
              volumeMounts: [
                {
                  // The overlay layers, the runtime's state (init PIDs), /var/log/pods and kubelet
                  // checkpoints, all read-only, submounts included: evidence is read, never changed.
                  name: 'host-root',
                  mountPath: HOST_ROOT,
                  readOnly: true,
                  recursiveReadOnly: 'IfPossible',
                },
              ],
            },
          ],
          volumes: [{ name: 'host-root', hostPath: { path: '/', type: 'Directory' } }],
        },
      },
    },
  };
}

export function labelValue(s: string): string {
  return artifactSegment(s)
    .slice(0, 63)
    .replace(/[^A-Za-z0-9]+$/, '');
}
