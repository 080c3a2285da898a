import { createReadStream } from 'node:fs';
import { lstat, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { ArtifactMetadata, EvidenceStore, StoredArtifact } from '../evidence/store.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { assessExposure } from './exposure.js';
import { homeTargets, opaqueDirs, overlayDiff, overlayLayout, targetedPaths } from './filesystem.js';
import { locateContainer, runtimes, type LocatedContainer } from './locate.js';
import { artifactSegment, findCheckpoints, findPodLogs } from './logs.js';
import { memoryDump } from './memory.js';
import { parseStatus } from './procfs.js';
import { readNetwork } from './network.js';
import {
  containerPids,
  exeIdentity,
  processTree,
  readBootTime,
  readNamespaces,
  readProcess,
  type ProcessSnapshot,
} from './processes.js';
import { CollectionReport, collectorMetrics, errorMessage, type CollectionReportJson } from './report.js';
import { containedPath, storeTar, walk, type TarGap } from './tar.js';

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
] as const;
export type ArtifactGroup = (typeof artifactGroups)[number];

export const collectOptionsSchema = z.object({
  caseId: z.string().min(1),
  containerId: z.string().min(1),
  runtime: z.enum([...runtimes, 'auto']).default('auto'),
  /** Replaces the default state directories of `runtime` (e.g. a custom `runc --root`). */
  runtimeRoot: z.string().optional(),
  namespace: z.string().optional(),
  pod: z.string().optional(),
  /** The container's name in the pod, to pick its logs and checkpoint; all when absent. */
  containerName: z.string().optional(),
  node: z.string().optional(),
  procRoot: z.string().default('/proc'),
  /** Where the host's file system is visible: '/' with hostPID + hostPath mounts at the same paths. */
  hostRoot: z.string().default('/'),
  podLogsRoot: z.string().default('/var/log/pods'),
  checkpointsRoot: z.string().default('/var/lib/kubelet/checkpoints'),
  /** A process known to run in the host's namespaces, to tell which ones the container shares. */
  hostReferencePid: z.number().int().positive().default(1),
  groups: z.array(z.enum(artifactGroups)).default(artifactGroups.filter((g) => g !== 'fullRootfs')),
  caps: z
    .object({
      /** Largest single file copied (executables, deleted files, memfds, files in a tar). */
      maxFileBytes: z
        .number()
        .int()
        .positive()
        .default(512 * MiB),
      maxWritableLayerBytes: z
        .number()
        .int()
        .positive()
        .default(20 * GiB),
      maxTargetedBytes: z
        .number()
        .int()
        .positive()
        .default(2 * GiB),
      maxRootfsBytes: z
        .number()
        .int()
        .positive()
        .default(20 * GiB),
      maxMemoryBytesPerProcess: z
        .number()
        .int()
        .positive()
        .default(2 * GiB),
      maxMemoryBytesTotal: z
        .number()
        .int()
        .positive()
        .default(8 * GiB),
    })
    .prefault({}),
  /** Where the kubelet reads the container's termination message; null to not write one. */
  terminationMessagePath: z.string().nullable().default('/dev/termination-log'),
});
export type CollectOptions = z.input<typeof collectOptionsSchema>;
type Options = z.output<typeof collectOptionsSchema>;

export interface CollectResult {
  ok: boolean;
  report: CollectionReportJson;
  reportArtifact?: StoredArtifact;
  summary: string;
  container?: LocatedContainer;
}

/**
 * Collects everything the node holds about one container into the evidence store, most
 * volatile first (processes, their files and sockets, memory), then the file system, logs and
 * checkpoint. Every artifact streams straight from /proc or the disk into the store. A failure
 * of one piece is recorded in the report and the rest goes on; only a container that cannot be
 * found ends the run early (with a report saying so).
 */
export async function collectContainer(
  input: CollectOptions,
  store: EvidenceStore,
  deps: { registry: Registry; logger?: Logger },
): Promise<CollectResult> {
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
  const meta = (collectedBy: string, containerId?: string): ArtifactMetadata => ({
    collectedBy: `collector/${collectedBy}`,
    collectedAt: new Date().toISOString(),
    ...(opts.node && { node: opts.node }),
    ...(containerId && { containerId }),
  });
  const put = async (
    name: string,
    body: Readable | Buffer | string,
    m: ArtifactMetadata,
  ): Promise<StoredArtifact | undefined> => {
    try {
      const a = await store.put(opts.caseId, `${prefix}/${name}`, body, m);
      report.stored(a);
      return a;
    } catch (err) {
      report.fail(`${prefix}/${name}`, err);
      log.warn({ artifact: name, err: errorMessage(err) }, 'artifact not stored');
      return undefined;
    }
  };
  const json = (v: unknown): string =>
    `${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x), 2)}\n`;

  let container: LocatedContainer | undefined;
  let fatal: string | undefined;
  try {
    container = await locateContainer({
      containerId: opts.containerId,
      runtime: opts.runtime,
      procRoot: opts.procRoot,
      hostRoot: opts.hostRoot,
      ...(opts.runtimeRoot &&
        opts.runtime !== 'auto' && { runtimeRoots: { [opts.runtime]: [opts.runtimeRoot] } }),
    });
    report.header.containerId = container.id;
    report.header.runtime = container.runtime;
    log.info({ initPid: container.initPid, via: container.via }, 'container found');
  } catch (err) {
    fatal = errorMessage(err);
    report.fail('container', err);
    log.error({ err: fatal }, 'container not found');
  }

  if (container) {
    const c = container;
    const m = (g: string): ArtifactMetadata => meta(g, c.id);
    const processes = await collectProcesses(opts, c, report, put, m, json, log);
    const init = processes.find((p) => p.pid === c.initPid);
    const hostNs = await readNamespaces(opts.procRoot, opts.hostReferencePid).catch((err: unknown) => {
      report.fail(`host namespaces (PID ${opts.hostReferencePid})`, err);
      return undefined;
    });

    await put(
      'container.json',
      json({ ...c, namespaces: init?.namespaces, cgroup: init?.cgroup, hostNamespaces: hostNs }),
      { ...m('container'), contentType: 'application/json' },
    );

    if (want(opts, 'network')) {
      const net = await readNetwork(opts.procRoot, c.initPid, processes, hostNs?.net).catch(
        (err: unknown) => {
          report.fail('network', err);
          return undefined;
        },
      );
      if (net) {
        for (const [file, reason] of Object.entries(net.errors)) report.fail(`network ${file}`, reason);
        await put('network.json', json(net), { ...m('network'), contentType: 'application/json' });
      }
    }

    const capLastCap = await readFile(join(opts.procRoot, 'sys/kernel/cap_last_cap'), 'utf8').then(
      Number,
      () => undefined,
    );
    const hostCapabilities = await readFile(
      join(opts.procRoot, String(opts.hostReferencePid), 'status'),
      'utf8',
    ).then(
      (t) => parseStatus(t).capabilities.bounding,
      () => undefined,
    );
    const exposure = assessExposure({
      initStatus: init?.status,
      capLastCap,
      hostCapabilities,
      namespaces: init?.namespaces,
      hostNamespaces: hostNs,
      mounts: init?.mounts,
    });
    await put('exposure.json', json(exposure), { ...m('exposure'), contentType: 'application/json' });

    if (want(opts, 'memory')) await collectMemory(opts, processes, report, put, m, json);
    else report.skip('memory', 'group not requested');

    await collectFilesystem(opts, c, init, report, put, m, json, store, prefix);
  }

  if (want(opts, 'logs') || want(opts, 'checkpoint'))
    await collectLogs(opts, report, put, meta('logs', container?.id));

  let reportArtifact: StoredArtifact | undefined;
  try {
    reportArtifact = await store.put(opts.caseId, `${prefix}/report.json`, json(report.toJSON()), {
      ...meta('report', container?.id),
      contentType: 'application/json',
    });
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
    { collected: report.collected.length, failed: report.failed.length, skipped: report.skipped.length },
    'collection finished',
  );
  return { ok: fatal === undefined, report: report.toJSON(), reportArtifact, summary, container };
}

type Put = (
  name: string,
  body: Readable | Buffer | string,
  m: ArtifactMetadata,
) => Promise<StoredArtifact | undefined>;
type Meta = (group: string) => ArtifactMetadata;

async function collectProcesses(
  opts: Options,
  c: LocatedContainer,
  report: CollectionReport,
  put: Put,
  m: Meta,
  json: (v: unknown) => string,
  log: Logger,
): Promise<ProcessSnapshot[]> {
  let pids: number[];
  try {
    pids = await containerPids(opts.procRoot, c.initPid, c.id, opts.hostReferencePid);
  } catch (err) {
    report.fail('process list', err);
    pids = [c.initPid];
  }
  const bootTime = await readBootTime(opts.procRoot).catch((err: unknown) => {
    report.fail('boot time (/proc/stat)', err);
    return undefined;
  });
  const processes: ProcessSnapshot[] = [];
  for (const pid of pids) {
    const p = await readProcess(opts.procRoot, pid, bootTime);
    if (p.errors.stat && p.errors.status) {
      report.fail(`process ${pid}`, `exited during collection (${p.errors.stat})`);
    } else {
      for (const [field, reason] of Object.entries(p.errors)) report.fail(`process ${pid} ${field}`, reason);
    }
    processes.push(p);
  }
  log.info({ processes: processes.length }, 'processes read');

  if (want(opts, 'processes')) {
    // Executables: one copy per distinct binary; a deleted one is still readable through /proc/<pid>/exe.
    const copied = new Map<string, { artifact: string; sha256: string; size: number }>();
    for (const p of processes) {
      if (!p.exe) continue;
      const identity = await exeIdentity(opts.procRoot, p.pid).catch(() => undefined);
      const known = identity ? copied.get(identity) : undefined;
      if (known) {
        Object.assign(p.exe, known);
        continue;
      }
      const a = await copyProcFile(
        opts,
        `/proc/${p.pid}/exe (${p.exe.path})`,
        join(opts.procRoot, String(p.pid), 'exe'),
        `processes/${p.pid}/exe.bin`,
        report,
        put,
        m('processes/exe'),
      );
      if (a) {
        const ref = { artifact: a.name, sha256: a.sha256, size: a.size };
        Object.assign(p.exe, ref);
        if (identity) copied.set(identity, ref);
      }
    }
    // Deleted files and memfds exist nowhere but behind the process's descriptor.
    for (const p of processes) {
      for (const f of p.fds ?? []) {
        if (f.kind !== 'deleted-file' && f.kind !== 'memfd') continue;
        const a = await copyProcFile(
          opts,
          `/proc/${p.pid}/fd/${f.fd} (${f.target})`,
          join(opts.procRoot, String(p.pid), 'fd', String(f.fd)),
          `processes/${p.pid}/fd-${f.fd}.bin`,
          report,
          put,
          m(`processes/${f.kind}`),
        );
        if (a) f.artifact = a.name;
      }
    }
    await put('processes.json', json({ processes, tree: processTree(processes) }), {
      ...m('processes'),
      contentType: 'application/json',
    });
  } else {
    report.skip('processes', 'group not requested');
  }
  return processes;
}

function want(opts: Options, g: ArtifactGroup): boolean {
  return opts.groups.includes(g);
}

/** Copies a file (a /proc link to a binary, a deleted file, a memfd) if it is not over the cap. */
async function copyProcFile(
  opts: Options,
  what: string,
  path: string,
  name: string,
  report: CollectionReport,
  put: Put,
  meta: ArtifactMetadata,
): Promise<StoredArtifact | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    report.fail(what, err);
    return undefined;
  }
  try {
    const { size } = await handle.stat();
    if (size > opts.caps.maxFileBytes) {
      report.skip(what, `${size} bytes exceeds the per-file cap of ${opts.caps.maxFileBytes}`);
      return undefined;
    }
    // Read through the descriptor we opened: the path may vanish (process exit) meanwhile.
    return await put(name, handle.createReadStream({ autoClose: false, start: 0 }), {
      ...meta,
      contentType: 'application/octet-stream',
    });
  } finally {
    await handle.close();
  }
}

async function collectMemory(
  opts: Options,
  processes: ProcessSnapshot[],
  report: CollectionReport,
  put: Put,
  m: Meta,
  json: (v: unknown) => string,
): Promise<void> {
  let budget = opts.caps.maxMemoryBytesTotal;
  for (const p of processes) {
    if (!p.maps) {
      report.fail(`memory of ${p.pid}`, 'no memory map (process exited or maps unreadable)');
      continue;
    }
    if (budget <= 0) {
      report.skip(
        `memory of ${p.pid}`,
        `the total memory cap of ${opts.caps.maxMemoryBytesTotal} bytes is used up`,
      );
      continue;
    }
    const dump = memoryDump(
      opts.procRoot,
      p.pid,
      p.maps,
      Math.min(budget, opts.caps.maxMemoryBytesPerProcess),
    );
    const a = await put(`processes/${p.pid}/memory.bin`, dump.stream, {
      ...m('memory'),
      contentType: 'application/octet-stream',
    });
    budget -= a?.size ?? 0;
    for (const r of dump.index) {
      if (r.gap === undefined) continue;
      const what = `memory of ${p.pid} ${r.start}-${r.end} ${r.path}`;
      if (r.gap.startsWith('skipped')) report.skip(what, r.gap);
      else report.fail(what, r.gap);
    }
    await put(`processes/${p.pid}/memory-index.json`, json(dump.index), {
      ...m('memory'),
      contentType: 'application/json',
    });
  }
}

function recordTarGaps(report: CollectionReport, artifact: string, gaps: TarGap[]): void {
  for (const g of gaps) {
    if (g.kind === 'skipped') report.skip(`${artifact}: ${g.path}`, g.reason);
    else report.fail(`${artifact}: ${g.path}`, g.reason);
  }
}

async function collectFilesystem(
  opts: Options,
  c: LocatedContainer,
  init: ProcessSnapshot | undefined,
  report: CollectionReport,
  put: Put,
  m: Meta,
  json: (v: unknown) => string,
  store: EvidenceStore,
  prefix: string,
): Promise<void> {
  const tar = async (
    name: string,
    maxTotalBytes: number,
    group: string,
    fill: Parameters<typeof storeTar>[5],
  ): Promise<void> => {
    const artifact = `${prefix}/${name}`;
    try {
      const r = await storeTar(
        store,
        opts.caseId,
        artifact,
        { maxFileBytes: opts.caps.maxFileBytes, maxTotalBytes },
        m(group),
        fill,
      );
      report.stored(r.artifact);
      recordTarGaps(report, artifact, r.gaps);
    } catch (err) {
      report.fail(artifact, err);
    }
  };

  const layout = (() => {
    try {
      if (!init?.mounts)
        throw new Error(`init's mountinfo unreadable: ${init?.errors.mountinfo ?? 'no init process'}`);
      return overlayLayout(init.mounts);
    } catch (err) {
      report.fail('overlay layout', err);
      return undefined;
    }
  })();
  const host = (p: string): string => join(opts.hostRoot, p);

  if (layout && (want(opts, 'filesystemDiff') || want(opts, 'writableLayer'))) {
    const upper = host(layout.upperDir);
    const opaque = await opaqueDirs(upper).catch((err: unknown) => {
      report.fail('opaque directories (trusted.overlay.opaque)', err);
      return new Set<string>();
    });
    if (want(opts, 'filesystemDiff')) {
      const lowers = layout.lowerDirs.map(host);
      const unreadable = [];
      for (const l of lowers)
        if (
          !(await lstat(l).then(
            () => true,
            () => false,
          ))
        )
          unreadable.push(l);
      if (unreadable.length > 0)
        report.fail(
          'image layers',
          `unreadable, so additions and changes cannot be told apart: ${unreadable.join(', ')}`,
        );
      const diff = await overlayDiff(upper, lowers, opaque, (p, err) => report.fail(`diff ${p}`, err));
      await put('filesystem/diff.json', json({ layout, changes: diff }), {
        ...m('filesystem/diff'),
        contentType: 'application/json',
      });
    }
    if (want(opts, 'writableLayer')) {
      await tar(
        'filesystem/writable-layer.tar',
        opts.caps.maxWritableLayerBytes,
        'filesystem/writable-layer',
        async (t) => {
          for await (const { path, rel, st } of walk(upper, new Set(), (p, err) =>
            t.gap(p, 'failed', errorMessage(err)),
          )) {
            // Opaque markers travel as pax xattrs, as containerd's own layer tars carry them.
            const pax = opaque.has(rel) ? { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } : undefined;
            await t.add(path, rel || '.', st, pax);
          }
        },
      );
    }
  } else if (!want(opts, 'filesystemDiff') && !want(opts, 'writableLayer')) {
    report.skip('filesystem diff and writable layer', 'groups not requested');
  }

  // Everything else goes through /proc/<pid>/root: the container's own view, mounts included.
  const root = join(opts.procRoot, String(c.initPid), 'root');
  if (want(opts, 'targetedFiles')) {
    const homes = await homeTargets(root).catch((err: unknown) => {
      report.fail('filesystem/targeted.tar: /home', err);
      return [];
    });
    const paths = [...targetedPaths, ...homes];
    await tar('filesystem/targeted.tar', opts.caps.maxTargetedBytes, 'filesystem/targeted', async (t) => {
      for (const p of paths) {
        let path: string;
        try {
          path = await containedPath(root, p);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') t.gap(p, 'failed', errorMessage(err));
          continue;
        }
        const st = await lstat(path).catch(() => undefined);
        if (!st) continue;
        // A planted symlink (e.g. /tmp -> /) is archived as the link it is, never followed.
        if (st.isSymbolicLink()) await t.add(path, p.slice(1), st);
        else await t.addTree(path, p.slice(1));
      }
    });
  }
  if (want(opts, 'fullRootfs')) {
    // Other mounts (proc, sys, dev, volumes) are left out: they are not the container's file system.
    const exclude = new Set(
      (init?.mounts ?? []).filter((x) => x.mountPoint !== '/').map((x) => join(root, x.mountPoint)),
    );
    await tar('filesystem/rootfs.tar', opts.caps.maxRootfsBytes, 'filesystem/rootfs', async (t) => {
      await t.addTree(root, '.', exclude, true);
    });
    for (const x of exclude)
      report.skip(
        `filesystem/rootfs.tar: ${x.slice(root.length)}`,
        'separate mount, not part of the container root',
      );
  } else {
    report.skip('filesystem/rootfs.tar', 'full export not requested');
  }
  await put('filesystem/mounts.json', json(init?.mounts ?? []), {
    ...m('filesystem/mounts'),
    contentType: 'application/json',
  });
}

async function collectLogs(
  opts: Options,
  report: CollectionReport,
  put: Put,
  meta: ArtifactMetadata,
): Promise<void> {
  if (!opts.pod || !opts.namespace) {
    report.skip('logs and checkpoint', 'no --pod/--namespace given');
    return;
  }
  const containers = opts.containerName ? [opts.containerName] : undefined;
  if (want(opts, 'logs')) {
    const root = join(opts.hostRoot, opts.podLogsRoot);
    const files = await findPodLogs(root, opts.namespace, opts.pod, containers).catch((err: unknown) => {
      report.fail(`pod logs under ${root}`, err);
      return undefined;
    });
    if (files?.length === 0)
      report.skip('pod logs', `no log files for ${opts.namespace}/${opts.pod} under ${root}`);
    for (const f of files ?? []) {
      await put(`logs/${artifactSegment(f.container)}/${artifactSegment(f.file)}`, createReadStream(f.path), {
        ...meta,
        collectedBy: 'collector/logs',
        contentType: 'text/plain',
      });
    }
  }
  if (want(opts, 'checkpoint')) {
    const root = join(opts.hostRoot, opts.checkpointsRoot);
    const files = await findCheckpoints(root, opts.namespace, opts.pod, containers).catch((err: unknown) => {
      // No checkpoint directory at all is the common case: the kubelet never made one.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') report.fail(`checkpoints under ${root}`, err);
      return [];
    });
    if (files.length === 0)
      report.skip(
        'checkpoint',
        `no kubelet checkpoint archive for ${opts.namespace}/${opts.pod} under ${root}`,
      );
    for (const f of files) {
      await put(
        `checkpoint/${artifactSegment(f.split('/').pop() ?? 'checkpoint.tar')}`,
        createReadStream(f),
        { ...meta, collectedBy: 'collector/checkpoint', contentType: 'application/x-tar' },
      );
    }
  }
}
