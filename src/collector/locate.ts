import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { parseCgroup, parseStat } from './procfs.js';

export const runtimes = ['containerd', 'cri-o', 'docker', 'runc'] as const;
export type Runtime = (typeof runtimes)[number];

/**
 * Where each runtime keeps a running container's state, relative to the host root. Each entry
 * is a directory of `<full container id>/` sub-directories and how to read the init PID there.
 */
export const defaultRuntimeRoots: Record<Runtime, string[]> = {
  containerd: ['/run/containerd/io.containerd.runtime.v2.task/k8s.io'],
  'cri-o': ['/run/containers/storage/overlay-containers'],
  docker: [
    '/run/containerd/io.containerd.runtime.v2.task/moby',
    '/run/docker/runtime-runc/moby',
    '/var/run/docker/runtime-runc/moby',
  ],
  runc: ['/run/runc'],
};

export interface LocatedContainer {
  /** The full 64-hex ID. */
  id: string;
  runtime: Runtime | 'unknown';
  /** Host PID (as seen in procRoot) of the container's init process. */
  initPid: number;
  /** How it was found: a state file path, or `cgroup scan`. */
  via: string;
  /**
   * The host path where the runtime mounted the container's root file system, from the
   * runtime's own state (the container cannot write it); absent when no state names it.
   */
  rootfs?: string;
}

export class ContainerNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContainerNotFoundError';
  }
}

/**
 * Accepts the full 64-hex ID, Falco's 12-hex short ID, or the `containerd://<id>` form of a
 * pod's status.containerStatuses[].containerID.
 */
export function normalizeContainerId(raw: string): string {
  const id = raw
    .trim()
    .replace(/^[a-z-]+:\/\//, '')
    .toLowerCase();
  if (!/^[0-9a-f]{12,64}$/.test(id)) {
    throw new ContainerNotFoundError(
      `invalid container ID "${raw}": expected 12 to 64 hex digits (optionally runtime://<id>)`,
    );
  }
  return id;
}

const runcStateSchema = z.object({ init_process_pid: z.number().int().positive() });
const runcRootfsSchema = z.object({ config: z.object({ rootfs: z.string().startsWith('/') }) });
const ociBundleSchema = z.object({ root: z.object({ path: z.string().min(1) }) });

/**
 * Where the runtime mounted the rootfs, as its state says: runc's state.json (plain runc,
 * Docker) names it; containerd's and CRI-O's bundles hold the OCI config.json whose root.path
 * is relative to the bundle (containerd: `rootfs`) or absolute (CRI-O).
 */
async function readRootfs(hostRoot: string, stateDir: string): Promise<string | undefined> {
  const state = await readFile(join(hostRoot, stateDir, 'state.json'), 'utf8').catch(() => undefined);
  if (state !== undefined) {
    const parsed = runcRootfsSchema.safeParse(JSON.parse(state));
    if (parsed.success) return parsed.data.config.rootfs;
  }
  for (const bundle of [stateDir, join(stateDir, 'userdata')]) {
    const text = await readFile(join(hostRoot, bundle, 'config.json'), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const parsed = ociBundleSchema.safeParse(JSON.parse(text));
    if (parsed.success)
      return parsed.data.root.path.startsWith('/')
        ? parsed.data.root.path
        : join(bundle, parsed.data.root.path);
  }
  return undefined;
}

async function readInitPid(runtime: Runtime, stateDir: string): Promise<{ pid: number; file: string }> {
  // containerd's shim writes init.pid, CRI-O (conmon) a pidfile; runc (Docker's and plain) a state.json.
  for (const rel of ['init.pid', 'userdata/pidfile']) {
    const file = join(stateDir, rel);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const pid = Number(text.trim());
      if (!Number.isInteger(pid) || pid <= 0)
        throw new ContainerNotFoundError(`${file} holds no PID: "${text.trim().slice(0, 40)}"`);
      return { pid, file };
    }
  }
  const file = join(stateDir, 'state.json');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined)
    throw new ContainerNotFoundError(
      `no init.pid, userdata/pidfile or state.json under ${stateDir} (${runtime})`,
    );
  const parsed = runcStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new ContainerNotFoundError(`${file} has no init_process_pid`);
  return { pid: parsed.data.init_process_pid, file };
}

/** Full IDs among a runtime root's sub-directories that start with `id`. */
async function matchingIds(dir: string, id: string): Promise<string[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.filter((e) => /^[0-9a-f]{64}$/.test(e) && e.startsWith(id));
}

export interface LocateOptions {
  containerId: string;
  runtime: Runtime | 'auto';
  procRoot: string;
  hostRoot: string;
  /** Overrides of defaultRuntimeRoots (host paths, before hostRoot is prefixed). */
  runtimeRoots?: Partial<Record<Runtime, string[]>>;
}

/**
 * Finds a running container's init process: first in the runtime's state directories, then,
 * when no runtime knows it (or the state is gone), by scanning every process's cgroup for the ID.
 */
export async function locateContainer(opts: LocateOptions): Promise<LocatedContainer> {
  const id = normalizeContainerId(opts.containerId);
  const tried: string[] = [];
  const candidates = opts.runtime === 'auto' ? runtimes : [opts.runtime];
  for (const runtime of candidates) {
    for (const root of opts.runtimeRoots?.[runtime] ?? defaultRuntimeRoots[runtime]) {
      const dir = join(opts.hostRoot, root);
      tried.push(dir);
      const ids = await matchingIds(dir, id);
      if (ids.length > 1)
        throw new ContainerNotFoundError(
          `container ID ${id} is ambiguous in ${dir}: ${ids.map((i) => i.slice(0, 16)).join(', ')}`,
        );
      const full = ids[0];
      if (full === undefined) continue;
      const { pid, file } = await readInitPid(runtime, join(dir, full));
      if (!(await isRunning(opts.procRoot, pid))) {
        throw new ContainerNotFoundError(
          `container ${full.slice(0, 12)} is not running: init PID ${pid} from ${file} has no ${opts.procRoot}/${pid}`,
        );
      }
      // A host path as the runtime wrote it: the same namespace as the host's mount table.
      const rootfs = await readRootfs(opts.hostRoot, join(root, full)).catch(() => undefined);
      return { id: full, runtime, initPid: pid, via: file, ...(rootfs !== undefined && { rootfs }) };
    }
  }
  const scanned = await scanCgroups(opts.procRoot, id);
  if (scanned) return scanned;
  throw new ContainerNotFoundError(
    `container ${id} not found: no state under ${tried.join(', ')} and no process in ${opts.procRoot} has it in its cgroup`,
  );
}

async function isRunning(procRoot: string, pid: number): Promise<boolean> {
  return readFile(join(procRoot, String(pid), 'stat'), 'utf8').then(
    (s) => parseStat(s).state !== 'Z',
    () => false,
  );
}

/** PIDs (numeric directory names) of procRoot. */
export async function listPids(procRoot: string): Promise<number[]> {
  return (await readdir(procRoot)).filter((e) => /^\d+$/.test(e)).map(Number);
}

/**
 * The fallback: every runtime names the container's cgroup after its ID (cri-containerd-<id>.scope,
 * crio-<id>.scope, docker/<id>, /<id>), so the processes whose cgroup path holds an ID starting
 * with `id` are the container's; its init is the one whose parent is not among them.
 */
async function scanCgroups(procRoot: string, id: string): Promise<LocatedContainer | undefined> {
  const byId = new Map<string, number[]>();
  for (const pid of await listPids(procRoot)) {
    const text = await readFile(join(procRoot, String(pid), 'cgroup'), 'utf8').catch(() => '');
    const ids = new Set<string>();
    for (const e of parseCgroup(text))
      for (const m of e.path.matchAll(/[0-9a-f]{64}/g)) if (m[0].startsWith(id)) ids.add(m[0]);
    for (const full of ids) byId.set(full, [...(byId.get(full) ?? []), pid]);
  }
  if (byId.size > 1)
    throw new ContainerNotFoundError(
      `container ID ${id} is ambiguous among cgroups: ${[...byId.keys()].map((i) => i.slice(0, 16)).join(', ')}`,
    );
  const [entry] = byId;
  if (!entry) return undefined;
  const [full, pids] = entry;
  const members = new Set(pids);
  let init: number | undefined;
  for (const pid of pids.sort((a, b) => a - b)) {
    const stat = await readFile(join(procRoot, String(pid), 'stat'), 'utf8').then(parseStat, () => undefined);
    if (stat && !members.has(stat.ppid) && stat.state !== 'Z') {
      init = pid;
      break;
    }
  }
  if (init === undefined) return undefined;
  return { id: full, runtime: 'unknown', initPid: init, via: 'cgroup scan' };
}
