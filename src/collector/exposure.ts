import type { MountInfo, ProcStatus } from './procfs.js';

/** Capabilities that let a container process reach the host or other workloads. */
export const dangerousCapabilities = [
  'CAP_SYS_ADMIN',
  'CAP_SYS_PTRACE',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_BOOT',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_DAC_READ_SEARCH',
  'CAP_DAC_OVERRIDE',
  'CAP_SYS_CHROOT',
  'CAP_BPF',
  'CAP_PERFMON',
  'CAP_MKNOD',
  'CAP_SETFCAP',
] as const;

const runtimeSockets = [
  'docker.sock',
  'containerd.sock',
  'crio.sock',
  'cri-dockerd.sock',
  'dockershim.sock',
  'kubelet.sock',
];

/** Host directories whose bind mount into a container is a way out (or a view of other pods). */
const sensitiveHostPaths = [
  '/',
  '/etc',
  '/root',
  '/home',
  '/proc',
  '/sys',
  '/dev',
  '/boot',
  '/lib/modules',
  '/usr',
  '/var/run',
  '/run',
  '/var/lib/kubelet',
  '/var/lib/docker',
  '/var/lib/containerd',
  '/var/log',
  '/etc/kubernetes',
];

export const serviceAccountMountPoint = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ExposureIndicator {
  id:
    | 'privileged'
    | 'dangerous-capability'
    | 'host-namespace'
    | 'runtime-socket'
    | 'sensitive-host-path'
    | 'service-account-token'
    | 'no-seccomp'
    | 'runs-as-root';
  severity: 'critical' | 'high' | 'medium' | 'low';
  detail: string;
}

export interface ExposureInput {
  initStatus?: ProcStatus;
  /** /proc/sys/kernel/cap_last_cap: the highest capability this kernel knows. */
  capLastCap?: number;
  /** The bounding set of a host process: what "every capability" means on this node. */
  hostCapabilities?: string[];
  namespaces?: Record<string, string>;
  /** Namespaces of the host's PID 1, to compare with. */
  hostNamespaces?: Record<string, string>;
  /** The init process's mountinfo (mount points as the container sees them). */
  mounts?: MountInfo[];
}

/**
 * How exposed the container was: what an attacker inside could reach. A pure function of
 * what the collector read, so each rule is tested with a table.
 */
export function assessExposure(input: ExposureInput): ExposureIndicator[] {
  const out: ExposureIndicator[] = [];
  const status = input.initStatus;
  if (status) {
    const eff = new Set(status.capabilities.effective);
    // Privileged: nothing withheld that the host has (or, without a host reference, every capability the kernel knows).
    const full = input.hostCapabilities
      ? input.hostCapabilities.length > 0 && input.hostCapabilities.every((c) => eff.has(c))
      : input.capLastCap !== undefined && eff.size >= input.capLastCap + 1;
    if (full)
      out.push({
        id: 'privileged',
        severity: 'critical',
        detail: `all ${eff.size} capabilities are effective (privileged container)`,
      });
    const dangerous = dangerousCapabilities.filter((c) => eff.has(c));
    if (!full && dangerous.length > 0) {
      const critical = dangerous.some(
        (c) => c === 'CAP_SYS_ADMIN' || c === 'CAP_SYS_MODULE' || c === 'CAP_SYS_PTRACE',
      );
      out.push({
        id: 'dangerous-capability',
        severity: critical ? 'critical' : 'high',
        detail: dangerous.join(', '),
      });
    }
    if (status.seccomp === 'disabled')
      out.push({ id: 'no-seccomp', severity: 'medium', detail: 'init runs without a seccomp filter' });
    if (status.uids[1] === 0)
      out.push({ id: 'runs-as-root', severity: 'low', detail: 'init runs with effective UID 0' });
  }

  if (input.namespaces && input.hostNamespaces) {
    for (const kind of ['pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup'] as const) {
      const mine = input.namespaces[kind];
      if (mine !== undefined && mine === input.hostNamespaces[kind]) {
        out.push({
          id: 'host-namespace',
          severity: kind === 'pid' || kind === 'net' || kind === 'mnt' ? 'high' : 'medium',
          detail: `shares the host's ${kind} namespace (${mine})`,
        });
      }
    }
  }

  for (const m of input.mounts ?? []) {
    const base = m.mountPoint.split('/').pop() ?? '';
    const rootBase = m.root.split('/').pop() ?? '';
    if (runtimeSockets.includes(base) || runtimeSockets.includes(rootBase)) {
      out.push({
        id: 'runtime-socket',
        severity: 'critical',
        detail: `container runtime socket ${m.root} mounted at ${m.mountPoint}`,
      });
      continue;
    }
    if (
      m.mountPoint === serviceAccountMountPoint ||
      m.mountPoint.startsWith(`${serviceAccountMountPoint}/`)
    ) {
      out.push({
        id: 'service-account-token',
        severity: 'medium',
        detail: `service account token mounted at ${m.mountPoint}`,
      });
      continue;
    }
    if (isHostPathBind(m) && sensitiveHostPaths.includes(m.root.replace(/\/+$/, '') || '/')) {
      out.push({
        id: 'sensitive-host-path',
        severity: m.root === '/' ? 'critical' : 'high',
        detail: `host ${m.root} mounted at ${m.mountPoint} (${m.fsType} ${m.source})`,
      });
    }
  }
  return out;
}

/**
 * A bind mount of a host directory: a disk file system (not proc/sysfs/tmpfs/overlay that the
 * runtime sets up for the container itself) mounted somewhere other than the container's root.
 */
function isHostPathBind(m: MountInfo): boolean {
  if (m.mountPoint === '/') return false;
  const virtual = [
    'proc',
    'sysfs',
    'tmpfs',
    'devpts',
    'mqueue',
    'cgroup',
    'cgroup2',
    'overlay',
    'shm',
    'devtmpfs',
    'securityfs',
    'debugfs',
    'tracefs',
  ];
  if (virtual.includes(m.fsType)) {
    // The runtime's own /proc, /sys, /dev are at their usual places; the same fs elsewhere is a host view.
    const usual = ['/proc', '/sys', '/dev', '/dev/shm', '/dev/pts', '/dev/mqueue', '/sys/fs/cgroup'];
    return (
      !usual.some((u) => m.mountPoint === u || m.mountPoint.startsWith(`${u}/`)) &&
      (m.fsType === 'proc' || m.fsType === 'sysfs' || m.fsType === 'devtmpfs')
    );
  }
  return true;
}
