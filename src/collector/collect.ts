import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { EvidenceStore, StoredArtifact } from '../evidence/store.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { assessExposure } from './exposure.js';
import { homeTargets, opaqueDirs, overlayDiff, targetedPaths } from './filesystem.js';
import { locateContainer, runtimes, type LocatedContainer } from './locate.js';
import { CheckpointSummarizer, checkArchivePath } from './checkpoint.js';
import { artifactSegment, findPodLogs } from './logs.js';
import { memoryDump } from './memory.js';
import { capturePackets } from './capture.js';
import { cutTrackedConnections } from './conntrack.js';
import { collectImage, contentRootsFor } from './image.js';
import { readNetwork } from './network.js';
import {
  claimedLayout,
  defaultSnapshotterRoots,
  LayerLookup,
  openLayer,
  planLayout,
  type OverlayLayout,
  type RootfsKey,
} from './overlay.js';
import {
  containerPids,
  processTree,
  readBootTime,
  readNamespaces,
  readProcess,
  type ProcessSnapshot,
} from './processes.js';
import { parseStat, parseStatus } from './procfs.js';
import { CollectionReport, collectorMetrics, errorMessage, type CollectionReportJson } from './report.js';
import { CollectionRun, toJson } from './run.js';
import { cappedStream, Dir, fileType, NotRegularError, openProcLink } from './safe-fs.js';
import { major, minor, type TarLimits } from './tar.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const artifactGroups = [
  'processes',
  'network',
  'memory',
  'filesystemDiff',
  'writableLayer',
  'targetedFiles',
  'fullRootfs',
  'logs',
  'checkpoint',
  'packetCapture',
  'image',
] as const;
export type ArtifactGroup = (typeof artifactGroups)[number];

/** Off unless asked: the whole root file system, and a capture that holds the run for its window. */
export const defaultGroups: ArtifactGroup[] = artifactGroups.filter(
  (g) => g !== 'fullRootfs' && g !== 'packetCapture',
);

const bytes = (d: number) => z.number().int().positive().default(d);

export const collectOptionsSchema = z.object({
  caseId: z.string().min(1),
  containerId: z.string().min(1),
  runtime: z.enum([...runtimes, 'auto']).default('auto'),
  /** Replaces the default state directories of `runtime` (e.g. a custom `runc --root`). */
  runtimeRoot: z.string().optional(),
  namespace: z.string().optional(),
  pod: z.string().optional(),
  /** The pod's UID (pinned at containment): its logs are the kubelet's directory of this UID only. */
  podUid: z.string().optional(),
  /** The container's name in the pod, to pick its logs and checkpoint; all when absent. */
  containerName: z.string().optional(),
  node: z.string().optional(),
  procRoot: z.string().default('/proc'),
  /** Where the host's file system is visible: '/' with hostPID + hostPath mounts at the same paths. */
  hostRoot: z.string().default('/'),
  podLogsRoot: z.string().default('/var/log/pods'),
  checkpointsRoot: z.string().default('/var/lib/kubelet/checkpoints'),
  /**
   * What the kubelet answered the operator's checkpoint request for this container (ADR 0023):
   * the archive it named (a path as the node sees it), or its refusal. Only that archive is
   * collected; without either, no checkpoint is collected.
   */
  checkpoint: z
    .union([
      z.object({ archive: z.string().min(1).max(4096) }),
      z.object({ refused: z.string().min(1).max(4096) }),
    ])
    .optional(),
  /**
   * A process known to run in the host's namespaces, to tell which ones the container shares;
   * its mountinfo is the host's mount table, where the container's overlay layout is read.
   */
  hostReferencePid: z.number().int().positive().default(1),
  /**
   * Host directories the image and writable layers must lie below: a layer anywhere else is
   * refused (a recorded gap), never read. Defaults: containerd's, CRI-O's and Docker's.
   */
  snapshotterRoots: z.array(z.string().startsWith('/')).min(1).default(defaultSnapshotterRoots),
  groups: z.array(z.enum(artifactGroups)).default(defaultGroups),
  caps: z
    .object({
      /** Largest single file copied (executables, deleted files, memfds, logs, files in a tar). */
      maxFileBytes: bytes(512 * MiB),
      maxWritableLayerBytes: bytes(20 * GiB),
      maxTargetedBytes: bytes(2 * GiB),
      maxRootfsBytes: bytes(20 * GiB),
      maxMemoryBytesPerProcess: bytes(2 * GiB),
      maxMemoryBytesTotal: bytes(8 * GiB),
      /**
       * Executables, deleted files and memfds behind the processes' descriptors, all together: a
       * suspect can open a sparse memfd a thousand times (each copy is still capped per file).
       */
      maxProcessFilesBytes: bytes(4 * GiB),
      maxCheckpointBytes: bytes(16 * GiB),
      /** The packet capture's pcap, enforced on whole packets by the collector, not by tcpdump. */
      maxCaptureBytes: bytes(64 * MiB),
      /** The suspect image's layers, all together; 0: its index, manifest and config only. */
      maxImageLayerBytes: z
        .number()
        .int()
        .min(0)
        .default(512 * MiB),
      /** Entries of one tar or of the diff: a million empty files is a way to stall a walk. */
      maxEntries: bytes(1_000_000),
      /** Directory levels a walk descends. */
      maxDepth: bytes(256),
    })
    .prefault({}),
  /**
   * Seconds from the start by which the report must be stored. The steps stop a little before
   * (reportReserve) so the report has time to be written; unset: no overall deadline.
   */
  deadlineSeconds: z.number().positive().optional(),
  /** The most any one step may take: an artifact, a tar, one process's memory. */
  stepTimeoutSeconds: z.number().positive().default(300),
  /**
   * The pod's addresses whose tracked connections are cut once the socket table is read: the
   * NetworkPolicy then applies to connections opened before containment too (conntrack.ts).
   * Empty: nothing is cut (the case does not isolate the network, or the pod is hostNetwork).
   */
  cutConnectionsOf: z.array(z.string().min(1).max(64)).max(8).default([]),
  /** How long the packet capture runs (it runs alongside the other groups). */
  captureSeconds: z.number().positive().max(3600).default(30),
  /** The image reference and image ID the pod status gives for the container (image.ts). */
  image: z.string().min(1).max(4096).optional(),
  imageId: z.string().min(1).max(4096).optional(),
  /** The image the pod spec names, as the API server has it: a pinned digest is checked. */
  specImage: z.string().min(1).max(4096).optional(),
  /**
   * containerd content stores (io.containerd.content.v1.content) the image's blobs are read
   * from, on the host; derived from the snapshotter roots when absent.
   */
  imageContentRoots: z.array(z.string().startsWith('/')).min(1).optional(),
  /** Where the kubelet reads the container's termination message; null to not write one. */
  terminationMessagePath: z.string().nullable().default('/dev/termination-log'),
});
export type CollectOptions = z.input<typeof collectOptionsSchema>;
type Options = z.output<typeof collectOptionsSchema>;

/** Of the run's deadline, the time kept for storing the report: 10%, between 1 and 20 seconds. */
export function reportReserveMs(deadlineSeconds: number): number {
  return Math.min(20_000, Math.max(1000, deadlineSeconds * 100));
}

export interface CollectResult {
  ok: boolean;
  report: CollectionReportJson;
  reportArtifact?: StoredArtifact;
  summary: string;
  container?: LocatedContainer;
}

/** What the first steps learned and the later ones read. */
interface Context {
  opts: Options;
  container?: LocatedContainer;
  processes: ProcessSnapshot[];
  init?: ProcessSnapshot;
  hostNs?: Record<string, string>;
  /** null: looked up once and refused (the gap is recorded). */
  layout?: OverlayLayout | null;
  /** What the container's own mountinfo claims, when it disagrees with the host's table. */
  claimedLayout?: { upperDir?: string; lowerdir?: string };
  /** The packet capture running alongside the other groups. */
  capture?: Promise<void>;
}

/**
 * One entry per kind of evidence, in order of volatility (RFC 3227): what a process exit loses
 * first, the file system next, what the node keeps last. A new kind of evidence is one entry.
 */
interface GroupSpec {
  /** What the report calls it when it is skipped or cut short. */
  label: string;
  /** The --groups name that turns it on; always on when absent (small, and the rest needs it). */
  group?: ArtifactGroup;
  /** Needs the located container (logs and checkpoint do not). */
  container: boolean;
  collect(run: CollectionRun, ctx: Context): Promise<void>;
}

const groups: GroupSpec[] = [
  { label: 'container', container: true, collect: containerJson },
  // The socket table, then the cut, before anything the suspect can make long (its files): a
  // cut that waited behind them could be pushed past the run's deadline and never happen.
  { label: 'network', group: 'network', container: true, collect: network },
  { label: 'connections cut', container: false, collect: cutConnections },
  { label: 'processes', group: 'processes', container: true, collect: processFiles },
  { label: 'exposure', container: true, collect: exposure },
  { label: 'memory', group: 'memory', container: true, collect: memory },
  { label: 'filesystem diff', group: 'filesystemDiff', container: true, collect: filesystemDiff },
  { label: 'writable layer', group: 'writableLayer', container: true, collect: writableLayer },
  { label: 'targeted files', group: 'targetedFiles', container: true, collect: targetedFiles },
  { label: 'filesystem/rootfs.tar', group: 'fullRootfs', container: true, collect: fullRootfs },
  { label: 'mounts', container: true, collect: mounts },
  { label: 'logs', group: 'logs', container: false, collect: logs },
  { label: 'checkpoint', group: 'checkpoint', container: false, collect: checkpoint },
  { label: 'image', group: 'image', container: false, collect: image },
];

/**
 * Collects everything the node holds about one container into the evidence store, most
 * volatile first. Every artifact streams straight from /proc or the disk into the store, through
 * the reads of safe-fs.ts (never blocking, never following a link, never past a cap). Each step
 * has a deadline and the run has one; a failure of one piece is recorded in the report and the
 * rest goes on. The report is stored in every case: a container that cannot be found, a run
 * cut short by its deadline.
 */
export async function collectContainer(
  input: CollectOptions,
  store: EvidenceStore,
  deps: { registry: Registry; logger?: Logger },
): Promise<CollectResult> {
  const startedAt = Date.now();
  const opts = collectOptionsSchema.parse(input);
  const log = (deps.logger ?? silentLogger).child({
    component: 'collector',
    caseId: opts.caseId,
    containerId: opts.containerId,
  });
  const report = new CollectionReport(collectorMetrics(deps.registry), {
    caseId: opts.caseId,
    containerId: opts.containerId,
    runtime: opts.runtime,
    ...(opts.node && { node: opts.node }),
  });
  const prefix = `containers/${artifactSegment(opts.containerId.replace(/^[a-z-]+:\/\//, '').slice(0, 12))}`;
  const stepsUntil =
    opts.deadlineSeconds === undefined
      ? Infinity
      : startedAt + opts.deadlineSeconds * 1000 - reportReserveMs(opts.deadlineSeconds);
  const run = new CollectionRun(
    store,
    report,
    log,
    { caseId: opts.caseId, prefix, ...(opts.node && { node: opts.node }) },
    { stepsUntil, perStepMs: opts.stepTimeoutSeconds * 1000 },
  );

  const ctx: Context = { opts, processes: [] };
  let fatal: string | undefined;
  ctx.container = await run.step('container', () =>
    locateContainer({
      containerId: opts.containerId,
      runtime: opts.runtime,
      procRoot: opts.procRoot,
      hostRoot: opts.hostRoot,
      ...(opts.runtimeRoot &&
        opts.runtime !== 'auto' && { runtimeRoots: { [opts.runtime]: [opts.runtimeRoot] } }),
    }),
  );
  if (ctx.container) {
    run.containerId = report.header.containerId = ctx.container.id;
    report.header.runtime = ctx.container.runtime;
    log.info({ initPid: ctx.container.initPid, via: ctx.container.via }, 'container found');
    // First of all: the capture window runs while everything else is read.
    if (opts.groups.includes('packetCapture'))
      ctx.capture = startPacketCapture(run, ctx, ctx.container, stepsUntil);
    await snapshotProcesses(run, ctx, ctx.container);
  } else {
    fatal = report.failed.find((f) => f.what === 'container')?.reason ?? 'container not found';
    log.error({ err: fatal }, 'container not found');
  }

  for (const g of groups) {
    if (g.container && !ctx.container) continue;
    if (g.group && !opts.groups.includes(g.group)) {
      run.skip(g.label, 'group not requested');
      continue;
    }
    if (run.expired) {
      report.cutShort ??= `the run's deadline of ${opts.deadlineSeconds} s was reached before ${g.label}`;
      run.skip(g.label, "not collected: the run's deadline was reached");
      continue;
    }
    try {
      await g.collect(run, ctx);
    } catch (err) {
      run.gap(g.label, err);
    }
  }
  if (ctx.capture) await ctx.capture;

  let reportArtifact: StoredArtifact | undefined;
  try {
    reportArtifact = await store.put(
      opts.caseId,
      `${prefix}/report.json`,
      toJson(report.toJSON()),
      run.meta('report', 'application/json'),
    );
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'report not stored');
    fatal ??= `report not stored: ${errorMessage(err)}`;
  }
  const summary = report.summary(reportArtifact, fatal);
  if (opts.terminationMessagePath) {
    await writeFile(opts.terminationMessagePath, summary).catch((err: unknown) =>
      log.warn({ err: errorMessage(err) }, 'termination message not written'),
    );
  }
  log.info(
    {
      collected: report.collected.length,
      failed: report.failed.length,
      skipped: report.skipped.length,
      deadlines: report.deadlines.length,
    },
    'collection finished',
  );
  return {
    ok: fatal === undefined,
    report: report.toJSON(),
    reportArtifact,
    summary,
    container: ctx.container,
  };
}

/** Never rejects: every way it can fail is recorded by capturePackets. */
function startPacketCapture(
  run: CollectionRun,
  ctx: Context,
  c: LocatedContainer,
  stepsUntil: number,
): Promise<void> {
  const { opts } = ctx;
  const left = stepsUntil - Date.now();
  const durationMs = Math.max(0, Math.min(opts.captureSeconds * 1000, left));
  return capturePackets(run, {
    procRoot: opts.procRoot,
    initPid: c.initPid,
    hostReferencePid: opts.hostReferencePid,
    maxBytes: opts.caps.maxCaptureBytes,
    durationMs,
  }).catch((err: unknown) => run.gap('network/capture.pcap', err));
}

/** Whether a process is gone now, or a zombie (exiting, dead): its failed reads are its exit. */
async function exitedSince(procRoot: string, pid: number): Promise<boolean> {
  try {
    const state = parseStat(await readFile(join(procRoot, String(pid), 'stat'), 'utf8')).state;
    return state === 'Z' || state === 'X' || state === 'x';
  } catch {
    return true;
  }
}

/** /proc of every process of the container: what the later groups read. */
async function snapshotProcesses(run: CollectionRun, ctx: Context, c: LocatedContainer): Promise<void> {
  const { opts } = ctx;
  const pids = (await run.step('process list', () =>
    containerPids(opts.procRoot, c.initPid, c.id, opts.hostReferencePid),
  )) ?? [c.initPid];
  const bootTime = await readBootTime(opts.procRoot).catch((err: unknown) => {
    run.gap('boot time (/proc/stat)', err);
    return undefined;
  });
  for (const pid of pids) {
    // Reading cmdline or environ reads the process's memory: a page it holds with userfaultfd blocks the reader.
    const p = await run.step(`process ${pid}`, () => readProcess(opts.procRoot, pid, bootTime));
    if (!p) continue;
    if (p.errors.stat && p.errors.status) {
      run.gap(`process ${pid}`, `exited during collection (${p.errors.stat})`);
    } else if (
      Object.keys(p.errors).length > 0 &&
      (Object.values(p.errors).some((r) => /EINVAL|ESRCH/.test(r)) || (await exitedSince(opts.procRoot, pid)))
    ) {
      // Gone half way through its reads: an exiting task answers some with EINVAL (no namespaces
      // left) or ESRCH, then its /proc entry is a zombie's or none. Its errors are all listed.
      const fields = Object.entries(p.errors).map(([field, reason]) => `${field}: ${reason}`);
      run.gap(`process ${pid}`, `exited during collection (${fields.join('; ')})`.slice(0, 1000));
    } else {
      for (const [field, reason] of Object.entries(p.errors)) run.gap(`process ${pid} ${field}`, reason);
    }
    ctx.processes.push(p);
  }
  ctx.init = ctx.processes.find((p) => p.pid === c.initPid);
  ctx.hostNs = await readNamespaces(opts.procRoot, opts.hostReferencePid).catch((err: unknown) => {
    run.gap(`host namespaces (PID ${opts.hostReferencePid})`, err);
    return undefined;
  });
  run.log.info({ processes: ctx.processes.length }, 'processes read');
}

/** Executables, deleted files and memfds behind the processes' descriptors, then processes.json. */
async function processFiles(run: CollectionRun, ctx: Context): Promise<void> {
  const { opts, processes } = ctx;
  const { maxFileBytes, maxProcessFilesBytes } = opts.caps;
  // One copy per distinct file (device and inode): a binary run by many processes, a memfd
  // behind a thousand descriptors; and all of them together under one cap.
  const copied = new Map<string, { artifact: string; sha256: string; size: number }>();
  let left = maxProcessFilesBytes;
  const copyOnce = async (
    what: string,
    path: string,
    name: string,
    group: string,
    onSpecial?: Parameters<typeof copyProcFile>[6],
  ) => {
    const identity = await stat(path).then(
      (s) => `${s.dev}:${s.ino}`,
      () => undefined,
    );
    const known = identity ? copied.get(identity) : undefined;
    if (known) return known;
    if (left <= 0) {
      run.skip(what, `not copied: the process files' total cap of ${maxProcessFilesBytes} bytes is reached`);
      return undefined;
    }
    const a = await copyProcFile(run, ctx, what, path, name, group, onSpecial, Math.min(maxFileBytes, left));
    if (!a) return undefined;
    left -= a.size;
    const ref = { artifact: a.name, sha256: a.sha256, size: a.size };
    if (identity) copied.set(identity, ref);
    return ref;
  };
  // A deleted binary is still readable through /proc/<pid>/exe.
  for (const p of processes) {
    if (!p.exe) continue;
    const ref = await copyOnce(
      `/proc/${p.pid}/exe (${p.exe.path})`,
      join(opts.procRoot, String(p.pid), 'exe'),
      `processes/${p.pid}/exe.bin`,
      'processes/exe',
    );
    if (ref) Object.assign(p.exe, ref);
  }
  // Deleted files and memfds exist nowhere but behind the process's descriptor.
  for (const p of processes) {
    for (const f of p.fds ?? []) {
      if (f.kind !== 'deleted-file' && f.kind !== 'memfd') continue;
      const ref = await copyOnce(
        `/proc/${p.pid}/fd/${f.fd} (${f.target})`,
        join(opts.procRoot, String(p.pid), 'fd', String(f.fd)),
        `processes/${p.pid}/fd-${f.fd}.bin`,
        `processes/${f.kind}`,
        (special) => (f.special = special),
      );
      if (ref) f.artifact = ref.artifact;
    }
  }
  await run.json('processes.json', { processes, tree: processTree(processes) }, 'processes');
}

/**
 * Copies a regular file behind a /proc link, up to the per-file cap counted in bytes read. A
 * FIFO, socket or device behind it is recorded (type, mode, rdev) and never read.
 */
async function copyProcFile(
  run: CollectionRun,
  ctx: Context,
  what: string,
  path: string,
  name: string,
  group: string,
  onSpecial?: (s: NonNullable<ProcessSnapshot['fds']>[number]['special']) => void,
  cap = ctx.opts.caps.maxFileBytes,
): Promise<StoredArtifact | undefined> {
  return run.step(what, async (signal) => {
    let handle;
    try {
      handle = await openProcLink(path);
    } catch (err) {
      if (!(err instanceof NotRegularError)) throw err;
      onSpecial?.({
        type: fileType(err.st),
        mode: (err.st.mode & 0o7777).toString(8),
        rdev: err.st.rdev,
      });
      run.skip(what, err.message);
      return undefined;
    }
    try {
      const sizeAtOpen = (await handle.stat()).size;
      const { stream, outcome } = cappedStream(handle, cap, signal);
      const a = await run.put(name, stream, group);
      if (a && outcome.truncated)
        run.skip(
          what,
          `truncated: the first ${outcome.bytes} bytes are stored (per-file cap ${cap}; ${sizeAtOpen} bytes at open)`,
        );
      return a;
    } finally {
      await handle.close();
    }
  });
}

async function containerJson(run: CollectionRun, ctx: Context): Promise<void> {
  const { init } = ctx;
  await run.json(
    'container.json',
    { ...ctx.container, namespaces: init?.namespaces, cgroup: init?.cgroup, hostNamespaces: ctx.hostNs },
    'container',
  );
}

async function network(run: CollectionRun, ctx: Context): Promise<void> {
  const c = ctx.container;
  if (!c) return;
  const net = await run.step('network', () =>
    readNetwork(ctx.opts.procRoot, c.initPid, ctx.processes, ctx.hostNs?.net),
  );
  if (!net) return;
  for (const [file, reason] of Object.entries(net.errors)) run.gap(`network ${file}`, reason);
  await run.json('network.json', net, 'network');
}

/** After the socket table: connections opened before containment meet the policy too. */
async function cutConnections(run: CollectionRun, ctx: Context): Promise<void> {
  const { cutConnectionsOf, procRoot, hostReferencePid } = ctx.opts;
  if (cutConnectionsOf.length === 0) return;
  const shim = ctx.init?.ppid;
  const cut = await run.step('connections cut', () =>
    cutTrackedConnections(cutConnectionsOf, {
      procRoot,
      hostPids: shim && shim > 1 ? [hostReferencePid, shim] : [hostReferencePid],
      containerNetns: ctx.init?.namespaces?.net,
      timeoutMs: 10_000,
    }),
  );
  if (!cut) return;
  for (const c of cut) if (c.error) run.gap(`connections cut: ${c.direction} ${c.address}`, c.error);
  await run.json('connections-cut.json', { at: new Date().toISOString(), flows: cut }, 'network');
}

async function exposure(run: CollectionRun, ctx: Context): Promise<void> {
  const { procRoot, hostReferencePid } = ctx.opts;
  const capLastCap = await readFile(join(procRoot, 'sys/kernel/cap_last_cap'), 'utf8').then(
    Number,
    () => undefined,
  );
  const hostCapabilities = await readFile(join(procRoot, String(hostReferencePid), 'status'), 'utf8').then(
    (t) => parseStatus(t).capabilities.bounding,
    () => undefined,
  );
  const found = assessExposure({
    initStatus: ctx.init?.status,
    capLastCap,
    hostCapabilities,
    namespaces: ctx.init?.namespaces,
    hostNamespaces: ctx.hostNs,
    mounts: ctx.init?.mounts,
  });
  await run.json('exposure.json', found, 'exposure');
}

async function memory(run: CollectionRun, ctx: Context): Promise<void> {
  const { caps } = ctx.opts;
  let budget = caps.maxMemoryBytesTotal;
  for (const p of ctx.processes) {
    if (!p.maps) {
      run.gap(`memory of ${p.pid}`, 'no memory map (process exited or maps unreadable)');
      continue;
    }
    if (budget <= 0) {
      run.skip(`memory of ${p.pid}`, `the total memory cap of ${caps.maxMemoryBytesTotal} bytes is used up`);
      continue;
    }
    const maps = p.maps;
    await run.step(`memory of ${p.pid}`, async (signal) => {
      const dump = memoryDump(
        ctx.opts.procRoot,
        p.pid,
        maps,
        Math.min(budget, caps.maxMemoryBytesPerProcess),
        signal,
      );
      const a = await run.put(`processes/${p.pid}/memory.bin`, dump.stream, 'memory');
      budget -= a?.size ?? 0;
      for (const r of dump.index) {
        if (r.gap === undefined) continue;
        const what = `memory of ${p.pid} ${r.start}-${r.end} ${r.path}`;
        if (r.gap.startsWith('skipped')) run.skip(what, r.gap);
        else run.gap(what, r.gap);
      }
      await run.json(`processes/${p.pid}/memory-index.json`, dump.index, 'memory');
    });
  }
}

/**
 * The container's overlay as the host mounted it (overlay.ts): the runtime's state names the
 * rootfs, the host's mount table says what is mounted there. Never the container's own
 * mountinfo, which the suspect can rewrite from a namespace of its own. Looked up once; a
 * refusal is one recorded gap and the groups that need it are left out.
 */
async function layoutOf(run: CollectionRun, ctx: Context): Promise<OverlayLayout | undefined> {
  if (ctx.layout !== undefined) return ctx.layout ?? undefined;
  ctx.layout = null;
  const { opts } = ctx;
  try {
    const at = await rootfsKey(ctx);
    const hostMounts = await readFile(
      join(opts.procRoot, String(opts.hostReferencePid), 'mountinfo'),
      'utf8',
    );
    const plan = planLayout(hostMounts, at, opts.snapshotterRoots);
    if ('refused' in plan) throw new Error(plan.refused);
    ctx.layout = plan.layout;
    const claimed = ctx.init?.mounts && claimedLayout(ctx.init.mounts);
    if (claimed && claimed.upperDir !== plan.layout.upperDir) {
      // Evidence in itself: the suspect mounted over its own root.
      ctx.claimedLayout = claimed;
      run.skip(
        "the container's own mountinfo",
        `names upperdir ${claimed.upperDir ?? '(none)'}, the host's mount table ${plan.layout.upperDir}: the host's is used`,
      );
    }
    return plan.layout;
  } catch (err) {
    run.gap('overlay layout', err);
    return undefined;
  }
}

/** The runtime's rootfs when its state names one, else the device of the container's root. */
async function rootfsKey(ctx: Context): Promise<RootfsKey> {
  const c = ctx.container;
  if (c?.rootfs) return { rootfs: c.rootfs };
  const st = await stat(join(ctx.opts.procRoot, String(c?.initPid), 'root')).catch((err: unknown) => {
    throw new Error(
      `no runtime state names the container's rootfs (found by ${c?.via}) and its root cannot be read: ${errorMessage(err)}`,
    );
  });
  return { device: `${major(st.dev)}:${minor(st.dev)}` };
}

const host = (ctx: Context, p: string): string => join(ctx.opts.hostRoot, p);

function tarLimits(ctx: Context, maxTotalBytes: number): TarLimits {
  const { caps } = ctx.opts;
  return {
    maxFileBytes: caps.maxFileBytes,
    maxTotalBytes,
    maxEntries: caps.maxEntries,
    maxDepth: caps.maxDepth,
  };
}

async function opaqueOf(
  run: CollectionRun,
  upper: string,
  xattr: OverlayLayout['opaqueXattr'],
  signal: AbortSignal,
): Promise<Set<string>> {
  const incomplete = (why: string) =>
    run.gap('opaque directories (trusted.overlay.opaque)', new Error(`incomplete: ${why}`));
  return opaqueDirs(upper, xattr, signal, incomplete).catch((err: unknown) => {
    run.gap('opaque directories (trusted.overlay.opaque)', err);
    return new Set<string>();
  });
}

async function filesystemDiff(run: CollectionRun, ctx: Context): Promise<void> {
  const layout = await layoutOf(run, ctx);
  if (!layout) return;
  const { caps, hostRoot, snapshotterRoots } = ctx.opts;
  await run.step('filesystem/diff.json', async (signal) => {
    const upper = await openLayer(hostRoot, snapshotterRoots, layout.upperDir);
    const lowers: LayerLookup[] = [];
    try {
      const unreadable: string[] = [];
      for (const l of layout.lowerDirs) {
        const dir = await openLayer(hostRoot, snapshotterRoots, l).catch((err: unknown) => {
          unreadable.push(`${l} (${errorMessage(err)})`);
          return undefined;
        });
        if (dir) lowers.push(new LayerLookup(dir));
      }
      if (unreadable.length > 0)
        run.gap(
          'image layers',
          `unreadable, so additions and changes cannot be told apart: ${unreadable.join(', ')}`,
        );
      const opaque = await opaqueOf(run, host(ctx, layout.upperDir), layout.opaqueXattr, signal);
      const changes = await overlayDiff(upper, lowers, opaque, (p, err) => run.gap(`diff ${p}`, err), {
        signal,
        maxDepth: caps.maxDepth,
        maxEntries: caps.maxEntries,
      });
      await run.json(
        'filesystem/diff.json',
        { layout, ...(ctx.claimedLayout && { containerClaims: ctx.claimedLayout }), changes },
        'filesystem/diff',
      );
    } finally {
      for (const l of lowers) await l.close();
      await upper.close();
    }
  });
}

async function writableLayer(run: CollectionRun, ctx: Context): Promise<void> {
  const layout = await layoutOf(run, ctx);
  if (!layout) return;
  const name = 'filesystem/writable-layer.tar';
  await run.step(name, async (signal) => {
    const upper = await openLayer(ctx.opts.hostRoot, ctx.opts.snapshotterRoots, layout.upperDir);
    try {
      // getfattr takes a path: every component above the layer is the host's (the container
      // cannot rename its own upper dir), and the walk below goes through descriptors.
      const opaque = await opaqueOf(run, host(ctx, layout.upperDir), layout.opaqueXattr, signal);
      await run.tar(
        name,
        'filesystem/writable-layer',
        tarLimits(ctx, ctx.opts.caps.maxWritableLayerBytes),
        signal,
        (t) =>
          // Opaque markers travel as pax xattrs, as containerd's own layer tars carry them.
          t.addTree(upper, '', undefined, (rel) =>
            opaque.has(rel) ? { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } : undefined,
          ),
      );
    } finally {
      await upper.close();
    }
  });
}

/** Everything else goes through /proc/<pid>/root: the container's own view, mounts included. */
const containerRoot = (ctx: Context): string =>
  join(ctx.opts.procRoot, String(ctx.container?.initPid), 'root');

async function targetedFiles(run: CollectionRun, ctx: Context): Promise<void> {
  const name = 'filesystem/targeted.tar';
  const root = containerRoot(ctx);
  const homes = await homeTargets(root).catch((err: unknown) => {
    run.gap(`${name}: /home`, err);
    return [];
  });
  await run.step(name, (signal) =>
    run.tar(
      name,
      'filesystem/targeted',
      tarLimits(ctx, ctx.opts.caps.maxTargetedBytes),
      signal,
      async (t) => {
        for (const p of [...targetedPaths, ...homes]) {
          if (signal.aborted) break;
          let at;
          try {
            at = await Dir.openContained(root, p);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') t.gap(p, 'failed', errorMessage(err));
            continue;
          }
          const { dir, name: last } = at;
          try {
            if (last === undefined) continue;
            const st = await dir.lstat(last).catch(() => undefined);
            if (!st) continue;
            const entry = { parent: dir, name: last, rel: p.slice(1), st };
            // A planted symlink (e.g. /tmp -> /) is archived as the link it is, never followed.
            if (!st.isDirectory()) {
              await t.add(entry, p.slice(1));
              continue;
            }
            let sub: Dir;
            try {
              sub = await dir.openDir(last, st);
            } catch (err) {
              t.gap(p.slice(1), 'failed', errorMessage(err));
              continue;
            }
            try {
              await t.addTree(sub, p.slice(1));
            } finally {
              await sub.close();
            }
          } finally {
            await dir.close();
          }
        }
      },
    ),
  );
}

async function fullRootfs(run: CollectionRun, ctx: Context): Promise<void> {
  const name = 'filesystem/rootfs.tar';
  // Other mounts (proc, sys, dev, volumes) are left out: they are not the container's file system.
  const exclude = new Set(
    (ctx.init?.mounts ?? []).filter((x) => x.mountPoint !== '/').map((x) => x.mountPoint.slice(1)),
  );
  await run.step(name, async (signal) => {
    const root = await Dir.open(containerRoot(ctx));
    try {
      await run.tar(name, 'filesystem/rootfs', tarLimits(ctx, ctx.opts.caps.maxRootfsBytes), signal, (t) =>
        t.addTree(root, '.', exclude),
      );
    } finally {
      await root.close();
    }
  });
  for (const x of exclude) run.skip(`${name}: /${x}`, 'separate mount, not part of the container root');
}

async function mounts(run: CollectionRun, ctx: Context): Promise<void> {
  await run.json('filesystem/mounts.json', ctx.init?.mounts ?? [], 'filesystem/mounts');
}

/**
 * A log file the kubelet wrote under `root`: every directory below the root and the file itself
 * opened without following a link (root on the node could point the pod's log directory at
 * any host directory holding files named like logs), copied up to `cap`.
 */
async function copyHostFile(
  run: CollectionRun,
  root: string,
  rel: string,
  name: string,
  group: string,
  contentType: string,
  cap: number,
): Promise<void> {
  await run.step(join(root, rel), async (signal) => {
    const { dir, name: file } = await Dir.openContained(root, rel);
    try {
      if (file === undefined) throw new Error(`"${rel}" names no file`);
      const st = await dir.lstat(file);
      const handle = await dir.openFile(file, st);
      try {
        const { stream, outcome } = cappedStream(handle, cap, signal);
        const a = await run.put(name, stream, group, contentType);
        if (a && outcome.truncated)
          run.skip(join(root, rel), `truncated: the first ${outcome.bytes} bytes are stored (cap ${cap})`);
      } finally {
        await handle.close();
      }
    } finally {
      await dir.close();
    }
  });
}

function podOf(
  run: CollectionRun,
  ctx: Context,
  label: string,
): { pod: string; namespace: string } | undefined {
  const { pod, namespace } = ctx.opts;
  if (pod && namespace) return { pod, namespace };
  run.skip(label, 'no --pod/--namespace given');
  return undefined;
}

/** Log files copied per collection at most (one container's, when --container-name is given). */
export const MAX_LOG_FILES = 32;

async function logs(run: CollectionRun, ctx: Context): Promise<void> {
  const { opts } = ctx;
  const p = podOf(run, ctx, 'logs');
  if (!p) return;
  const root = join(opts.hostRoot, opts.podLogsRoot);
  if (!opts.podUid) {
    // By name alone an earlier pod of the same name would pass for the suspect.
    run.skip('pod logs', 'no --pod-uid given: the kubelet keeps logs per pod UID');
    return;
  }
  const containers = opts.containerName ? [opts.containerName] : undefined;
  const files = await findPodLogs(root, p.namespace, p.pod, opts.podUid, containers).catch((err: unknown) => {
    run.gap(`pod logs under ${root}`, err);
    return undefined;
  });
  if (files?.length === 0) run.skip('pod logs', `no log files for ${p.namespace}/${p.pod} under ${root}`);
  // The kubelet keeps a few per container (containerLogMaxFiles, default 5): a directory with
  // thousands is not the kubelet's doing, and is not copied past the cap.
  const kept = (files ?? []).slice(0, MAX_LOG_FILES);
  if ((files?.length ?? 0) > MAX_LOG_FILES)
    run.skip('pod logs', `${files!.length} log files: the first ${MAX_LOG_FILES} are copied`);
  for (const f of kept) {
    await copyHostFile(
      run,
      root,
      f.rel,
      `logs/${artifactSegment(f.container)}/${artifactSegment(f.file)}`,
      'logs',
      'text/plain',
      opts.caps.maxFileBytes,
    );
  }
}

/**
 * Exactly the archive the kubelet named in its answer to the operator (ADR 0023): checked to lie
 * directly in the kubelet's checkpoints directory with this container's name shape, opened
 * through descriptors (no symlink followed on the way), streamed to the store and summarised
 * from the same bytes. A refusal the operator got is recorded as this group's gap.
 */
async function checkpoint(run: CollectionRun, ctx: Context): Promise<void> {
  const { opts } = ctx;
  const request = opts.checkpoint;
  if (!request) {
    run.skip('checkpoint', 'no checkpoint was requested from the kubelet for this container');
    return;
  }
  if ('refused' in request) {
    run.gap('checkpoint', `the kubelet did not checkpoint the container: ${request.refused}`);
    return;
  }
  const p = podOf(run, ctx, 'checkpoint');
  if (!p) return;
  if (!opts.containerName) {
    run.skip('checkpoint', 'no --container-name given: the archive name cannot be checked');
    return;
  }
  const checked = checkArchivePath(request.archive, {
    root: opts.checkpointsRoot,
    namespace: p.namespace,
    pod: p.pod,
    container: opts.containerName,
  });
  if ('refused' in checked) {
    run.gap('checkpoint', `the archive the kubelet named is refused: ${checked.refused}`);
    return;
  }
  const cap = opts.caps.maxCheckpointBytes;
  const name = `checkpoint/${artifactSegment(checked.file)}`;
  await run.step(`checkpoint ${checked.path}`, async (signal) => {
    const { dir, name: last } = await Dir.openContained(opts.hostRoot, checked.path);
    try {
      if (last === undefined) throw new Error('no file name');
      const st = await dir.lstat(last);
      const handle = await dir.openFile(last, st);
      try {
        const { stream, outcome } = cappedStream(handle, cap, signal);
        const summarizer = new CheckpointSummarizer();
        async function* tee(): AsyncGenerator<Buffer> {
          for await (const chunk of stream) {
            await summarizer.write(chunk);
            yield chunk;
          }
        }
        const started = Date.now();
        const a = await run.put(name, tee(), 'checkpoint', 'application/x-tar');
        if (!a) return;
        if (outcome.truncated)
          run.skip(checked.path, `truncated: the first ${outcome.bytes} bytes are stored (cap ${cap})`);
        const summary = await summarizer.finish(outcome.truncated);
        run.log.info(
          {
            archive: checked.path,
            bytes: a.size,
            ms: Date.now() - started,
            processes: summary.processes.length,
          },
          'checkpoint archive stored',
        );
        await run.json(
          `${name}.summary.json`,
          {
            archive: { path: checked.path, artifact: a.name, size: a.size, sha256: a.sha256 },
            ...summary,
          },
          'checkpoint',
        );
      } finally {
        await handle.close();
      }
    } finally {
      await dir.close();
    }
  });
}

async function image(run: CollectionRun, ctx: Context): Promise<void> {
  const { opts } = ctx;
  await run.step('image', (signal) =>
    collectImage(
      run,
      {
        ...(opts.image && { reference: opts.image }),
        ...(opts.imageId && { imageId: opts.imageId }),
        ...(opts.specImage && { specReference: opts.specImage }),
        contentRoots: (opts.imageContentRoots ?? contentRootsFor(opts.snapshotterRoots)).map((r) =>
          join(opts.hostRoot, r),
        ),
        maxLayerBytes: opts.caps.maxImageLayerBytes,
        runtime: ctx.container?.runtime ?? opts.runtime,
      },
      signal,
    ),
  );
}
