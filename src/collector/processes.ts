import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { listPids } from './locate.js';
import {
  parseBootTime,
  parseCgroup,
  parseMaps,
  parseMountinfo,
  parseNulList,
  parseStat,
  parseStatus,
  type CgroupEntry,
  type MemoryMap,
  type MountInfo,
  type ProcStatus,
} from './procfs.js';
import { errorMessage } from './report.js';

/** USER_HZ: the unit of /proc/<pid>/stat times; 100 on every Linux architecture Kubernetes runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

export const namespaceKinds = [
  'cgroup',
  'ipc',
  'mnt',
  'net',
  'pid',
  'pid_for_children',
  'time',
  'user',
  'uts',
] as const;

export interface OpenFile {
  fd: number;
  /** readlink of /proc/<pid>/fd/N: a path, socket:[inode], pipe:[inode], anon_inode:[...], /memfd:name (deleted). */
  target: string;
  kind: 'file' | 'deleted-file' | 'memfd' | 'socket' | 'pipe' | 'anon' | 'other';
  /** Set once the collector copied it out (deleted files and memfds). */
  artifact?: string;
  /** A FIFO, socket or device behind a deleted name: recorded, never read. */
  special?: { type: string; mode: string; rdev: number };
}

export interface ProcessSnapshot {
  pid: number;
  ppid?: number;
  comm?: string;
  cmdline?: string[];
  environ?: string[];
  status?: ProcStatus;
  startTime?: string;
  exe?: { path: string; deleted: boolean; artifact?: string; sha256?: string; size?: number };
  cwd?: string;
  root?: string;
  fds?: OpenFile[];
  maps?: MemoryMap[];
  mounts?: MountInfo[];
  namespaces?: Record<string, string>;
  cgroup?: CgroupEntry[];
  /** What could not be read, by field: a process can exit, or a file be unreadable, mid-way. */
  errors: Record<string, string>;
}

/** A process tree node for the report (maps and mounts are left out to keep it readable). */
export interface ProcessTreeNode {
  pid: number;
  comm?: string;
  cmdline?: string[];
  children: ProcessTreeNode[];
}

async function tryRead<T>(
  errors: Record<string, string>,
  field: string,
  read: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    errors[field] = errorMessage(err);
    return undefined;
  }
}

export async function readNamespaces(procRoot: string, pid: number): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const kind of namespaceKinds) {
    const link = await readlink(join(procRoot, String(pid), 'ns', kind)).catch(() => undefined);
    if (link !== undefined) out[kind] = link;
  }
  if (Object.keys(out).length === 0) throw new Error(`no readable namespaces of PID ${pid}`);
  return out;
}

export function classifyFd(target: string): OpenFile['kind'] {
  if (target.startsWith('/memfd:')) return 'memfd';
  if (target.startsWith('socket:[')) return 'socket';
  if (target.startsWith('pipe:[')) return 'pipe';
  if (target.startsWith('anon_inode:')) return 'anon';
  if (target.endsWith(' (deleted)')) return 'deleted-file';
  if (target.startsWith('/')) return 'file';
  return 'other';
}

export async function readFds(procRoot: string, pid: number): Promise<OpenFile[]> {
  const dir = join(procRoot, String(pid), 'fd');
  const fds: OpenFile[] = [];
  for (const name of await readdir(dir)) {
    const target = await readlink(join(dir, name)).catch(() => undefined);
    // An fd closed between readdir and readlink is simply gone.
    if (target !== undefined) fds.push({ fd: Number(name), target, kind: classifyFd(target) });
  }
  return fds.sort((a, b) => a.fd - b.fd);
}

/**
 * Reads everything /proc tells about one process. Every field is read on its own: a failure
 * (the process exited, a file is unreadable) is recorded in `errors` and the rest goes on.
 */
export async function readProcess(
  procRoot: string,
  pid: number,
  bootTimeSeconds: number | undefined,
): Promise<ProcessSnapshot> {
  const dir = join(procRoot, String(pid));
  const errors: Record<string, string> = {};
  const text = (f: string) => () => readFile(join(dir, f), 'utf8');
  const stat = await tryRead(errors, 'stat', async () => parseStat(await text('stat')()));
  const exeLink = await tryRead(errors, 'exe', () => readlink(join(dir, 'exe')));
  const snapshot: ProcessSnapshot = {
    pid,
    ppid: stat?.ppid,
    comm: stat?.comm,
    cmdline: await tryRead(errors, 'cmdline', async () => parseNulList(await text('cmdline')())),
    environ: await tryRead(errors, 'environ', async () => parseNulList(await text('environ')())),
    status: await tryRead(errors, 'status', async () => parseStatus(await text('status')())),
    startTime:
      stat && bootTimeSeconds !== undefined
        ? new Date((bootTimeSeconds + stat.startTicks / CLOCK_TICKS_PER_SECOND) * 1000).toISOString()
        : undefined,
    exe:
      exeLink !== undefined
        ? { path: exeLink.replace(/ \(deleted\)$/, ''), deleted: exeLink.endsWith(' (deleted)') }
        : undefined,
    cwd: await tryRead(errors, 'cwd', () => readlink(join(dir, 'cwd'))),
    root: await tryRead(errors, 'root', () => readlink(join(dir, 'root'))),
    fds: await tryRead(errors, 'fds', () => readFds(procRoot, pid)),
    maps: await tryRead(errors, 'maps', async () => parseMaps(await text('maps')())),
    mounts: await tryRead(errors, 'mountinfo', async () => parseMountinfo(await text('mountinfo')())),
    namespaces: await tryRead(errors, 'namespaces', () => readNamespaces(procRoot, pid)),
    cgroup: await tryRead(errors, 'cgroup', async () => parseCgroup(await text('cgroup')())),
    errors,
  };
  return snapshot;
}

export async function readBootTime(procRoot: string): Promise<number> {
  return parseBootTime(await readFile(join(procRoot, 'stat'), 'utf8'));
}

/**
 * The cgroups that identify the container: those of init whose path names the container ID
 * (runtimes name the cgroup after it); if none does, every non-root cgroup of init.
 */
export function containerCgroups(initCgroup: CgroupEntry[], containerId: string): CgroupEntry[] {
  const nonRoot = initCgroup.filter((e) => e.path !== '/' && e.path !== '');
  const named = nonRoot.filter((e) => e.path.includes(containerId));
  return named.length > 0 ? named : nonRoot;
}

export function inCgroups(cgroup: CgroupEntry[], keys: CgroupEntry[]): boolean {
  return keys.some((k) =>
    cgroup.some((e) => e.hierarchy === k.hierarchy && (e.path === k.path || e.path.startsWith(`${k.path}/`))),
  );
}

/**
 * The container's processes: those in init's cgroup (or below it), plus those in init's PID
 * namespace when the container has its own (so a process moved out of the cgroup is still found).
 */
export async function containerPids(
  procRoot: string,
  initPid: number,
  containerId: string,
  hostReferencePid = 1,
): Promise<number[]> {
  const initDir = join(procRoot, String(initPid));
  const keys = containerCgroups(parseCgroup(await readFile(join(initDir, 'cgroup'), 'utf8')), containerId);
  const initPidNs = await readlink(join(initDir, 'ns', 'pid')).catch(() => undefined);
  const hostPidNs = await readlink(join(procRoot, String(hostReferencePid), 'ns', 'pid')).catch(
    () => undefined,
  );
  const ownPidNs = initPidNs !== undefined && initPidNs !== hostPidNs ? initPidNs : undefined;

  const members = new Set<number>([initPid]);
  for (const pid of await listPids(procRoot)) {
    const dir = join(procRoot, String(pid));
    const cgroup = await readFile(join(dir, 'cgroup'), 'utf8').then(parseCgroup, () => undefined);
    if (cgroup && keys.length > 0 && inCgroups(cgroup, keys)) members.add(pid);
    else if (ownPidNs && (await readlink(join(dir, 'ns', 'pid')).catch(() => undefined)) === ownPidNs)
      members.add(pid);
  }
  return [...members].sort((a, b) => a - b);
}

/** Parent/child tree of the container's processes; those whose parent is outside are roots. */
export function processTree(processes: ProcessSnapshot[]): ProcessTreeNode[] {
  const nodes = new Map<number, ProcessTreeNode>();
  for (const p of processes) nodes.set(p.pid, { pid: p.pid, comm: p.comm, cmdline: p.cmdline, children: [] });
  const roots: ProcessTreeNode[] = [];
  for (const p of processes) {
    const node = nodes.get(p.pid);
    if (!node) continue;
    const parent = p.ppid !== undefined && p.ppid !== p.pid ? nodes.get(p.ppid) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  return roots;
}
