/**
 * Pure parsers of the /proc files the collector reads. Each takes the file's text and returns
 * plain data; none touches the file system, so each is unit-tested on captured samples.
 *
 * The kernel writes IPv4 and IPv6 addresses in /proc/net/* as 32-bit words in host byte order;
 * the collector runs on the node it reads, and Kubernetes nodes are little-endian (x86-64,
 * arm64), so the words are decoded as little-endian.
 */

/** Linux capability numbers -> names (include/uapi/linux/capability.h). */
export const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
] as const;

/** A capability set from /proc/<pid>/status (hex bitmask) as names; unknown bits as `CAP_<n>`. */
export function decodeCapabilities(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim()}`);
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(CAPABILITIES[bit] ?? `CAP_${bit}`);
  }
  return names;
}

/** NUL-separated lists: cmdline, environ. */
export function parseNulList(text: string): string[] {
  const parts = text.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

export interface ProcStatus {
  name: string;
  state: string;
  pid: number;
  ppid: number;
  /** real, effective, saved, filesystem */
  uids: number[];
  gids: number[];
  nspid: number[];
  capabilities: {
    inheritable: string[];
    permitted: string[];
    effective: string[];
    bounding: string[];
    ambient: string[];
  };
  /** CapEff as the kernel wrote it, for an exact comparison. */
  capEffHex: string;
  seccomp: 'disabled' | 'strict' | 'filter' | 'unknown';
  noNewPrivs: boolean;
}

export function parseStatus(text: string): ProcStatus {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const nums = (key: string): number[] => (fields.get(key) ?? '').split(/\s+/).filter(Boolean).map(Number);
  const caps = (key: string): string[] => (fields.has(key) ? decodeCapabilities(fields.get(key) ?? '0') : []);
  const seccompModes = { '0': 'disabled', '1': 'strict', '2': 'filter' } as const;
  return {
    name: fields.get('Name') ?? '',
    state: fields.get('State') ?? '',
    pid: Number(fields.get('Pid')),
    ppid: Number(fields.get('PPid')),
    uids: nums('Uid'),
    gids: nums('Gid'),
    nspid: nums('NSpid'),
    capabilities: {
      inheritable: caps('CapInh'),
      permitted: caps('CapPrm'),
      effective: caps('CapEff'),
      bounding: caps('CapBnd'),
      ambient: caps('CapAmb'),
    },
    capEffHex: fields.get('CapEff') ?? '',
    seccomp: seccompModes[(fields.get('Seccomp') ?? '') as keyof typeof seccompModes] ?? 'unknown',
    noNewPrivs: fields.get('NoNewPrivs') === '1',
  };
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** Clock ticks after boot (field 22). */
  startTicks: number;
}

/** /proc/<pid>/stat. comm may hold spaces and parentheses, so it ends at the last ')'. */
export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`not a /proc/<pid>/stat line: ${text.slice(0, 80)}`);
  const rest = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // rest[0] is field 3 (state); field n is rest[n - 3].
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '',
    ppid: Number(rest[1]),
    startTicks: Number(rest[19]),
  };
}

/** `btime` (boot time, seconds since the epoch) from /proc/stat. */
export function parseBootTime(procStat: string): number {
  const m = /^btime (\d+)$/m.exec(procStat);
  if (!m) throw new Error('no btime in /proc/stat');
  return Number(m[1]);
}

export interface MemoryMap {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  /** File path, or [heap], [stack], [vdso]...; '' for anonymous memory. */
  path: string;
}

export function parseMaps(text: string): MemoryMap[] {
  const maps: MemoryMap[] = [];
  for (const line of text.split('\n')) {
    // The path is everything after the fifth field and may itself contain spaces.
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    maps.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3] ?? '',
      offset: BigInt(`0x${m[4]}`),
      dev: m[5] ?? '',
      inode: Number(m[6]),
      path: m[7] ?? '',
    });
  }
  return maps;
}

/** Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash, \054 comma). */
export function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export interface MountInfo {
  id: number;
  parentId: number;
  /** major:minor of the file system. */
  device: string;
  /** The directory of the file system that is mounted (for a bind mount, the source directory). */
  root: string;
  mountPoint: string;
  options: string[];
  fsType: string;
  source: string;
  superOptions: Record<string, string>;
}

export function parseMountinfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [id, parentId, device, root, mountPoint, options] = line.slice(0, sep).split(' ');
    const [fsType, source, superOptions] = line.slice(sep + 3).split(' ');
    const superOpts: Record<string, string> = {};
    for (const opt of (superOptions ?? '').split(',')) {
      if (!opt) continue;
      const eq = opt.indexOf('=');
      if (eq < 0) superOpts[unescapeOctal(opt)] = '';
      else superOpts[unescapeOctal(opt.slice(0, eq))] = unescapeOctal(opt.slice(eq + 1));
    }
    mounts.push({
      id: Number(id),
      parentId: Number(parentId),
      device: device ?? '',
      root: unescapeOctal(root ?? ''),
      mountPoint: unescapeOctal(mountPoint ?? ''),
      options: (options ?? '').split(','),
      fsType: fsType ?? '',
      source: unescapeOctal(source ?? ''),
      superOptions: superOpts,
    });
  }
  return mounts;
}

export interface CgroupEntry {
  /** 0 for the cgroup v2 unified hierarchy. */
  hierarchy: number;
  /** v1 controllers (e.g. ['cpu', 'cpuacct'] or ['name=systemd']); [] for v2. */
  controllers: string[];
  path: string;
}

export function parseCgroup(text: string): CgroupEntry[] {
  const entries: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    entries.push({ hierarchy: Number(m[1]), controllers: m[2] ? m[2].split(',') : [], path: m[3] ?? '' });
  }
  return entries;
}

/** IPv4 as the kernel prints it: one 32-bit word in host (little-endian) byte order. */
export function decodeIPv4(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

/** IPv6 as the kernel prints it: four 32-bit words, each in host (little-endian) byte order. */
export function decodeIPv6(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.slice(12).join('.')}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // The WHATWG URL parser prints IPv6 in canonical (RFC 5952) compressed form.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
  '0C': 'NEW_SYN_RECV',
};

export type InetProtocol = 'tcp' | 'tcp6' | 'udp' | 'udp6';

export interface InetSocket {
  protocol: InetProtocol;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** TCP state names; UDP shows UNCONN (07) or ESTABLISHED (01, a connected socket), as ss does. */
  state: string;
  uid: number;
  inode: number;
}

export function parseInetSockets(text: string, protocol: InetProtocol): InetSocket[] {
  const decode = protocol.endsWith('6') ? decodeIPv6 : decodeIPv4;
  const sockets: InetSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [local, remote, st] = [f[1] ?? '', f[2] ?? '', (f[3] ?? '').toUpperCase()];
    const [lAddr, lPort] = local.split(':');
    const [rAddr, rPort] = remote.split(':');
    const state = protocol.startsWith('udp') && st === '07' ? 'UNCONN' : (TCP_STATES[st] ?? st);
    sockets.push({
      protocol,
      localAddress: decode(lAddr ?? ''),
      localPort: parseInt(lPort ?? '0', 16),
      remoteAddress: decode(rAddr ?? ''),
      remotePort: parseInt(rPort ?? '0', 16),
      state,
      uid: Number(f[7]),
      inode: Number(f[9]),
    });
  }
  return sockets;
}

export interface UnixSocket {
  type: 'STREAM' | 'DGRAM' | 'SEQPACKET' | string;
  state: 'LISTEN' | 'UNCONNECTED' | 'CONNECTING' | 'CONNECTED' | 'DISCONNECTING' | string;
  inode: number;
  /** Filesystem path, `@name` for the abstract namespace, '' when unnamed. */
  path: string;
}

const UNIX_TYPES: Record<string, string> = { '0001': 'STREAM', '0002': 'DGRAM', '0005': 'SEQPACKET' };
const UNIX_STATES: Record<string, string> = {
  '01': 'UNCONNECTED',
  '02': 'CONNECTING',
  '03': 'CONNECTED',
  '04': 'DISCONNECTING',
};
const SO_ACCEPTCON = 0x10000;

export function parseUnixSockets(text: string): UnixSocket[] {
  const sockets: UnixSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode [Path] -- the path may contain spaces.
    const m = /^\s*[0-9a-fA-F]+: [0-9A-F]+ [0-9A-F]+ ([0-9A-F]+) ([0-9A-F]+) ([0-9A-F]+)\s+(\d+) ?(.*)$/.exec(
      line,
    );
    if (!m) continue;
    const listening = (parseInt(m[1] ?? '0', 16) & SO_ACCEPTCON) !== 0;
    sockets.push({
      type: UNIX_TYPES[m[2] ?? ''] ?? m[2] ?? '',
      state: listening ? 'LISTEN' : (UNIX_STATES[m[3] ?? ''] ?? m[3] ?? ''),
      inode: Number(m[4]),
      path: m[5] ?? '',
    });
  }
  return sockets;
}

export interface Route {
  iface: string;
  destination: string;
  gateway: string;
  mask: string;
  flags: number;
  metric: number;
}

/** /proc/<pid>/net/route (IPv4). */
export function parseRoutes(text: string): Route[] {
  const routes: Route[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    routes.push({
      iface: f[0] ?? '',
      destination: decodeIPv4(f[1] ?? '0'),
      gateway: decodeIPv4(f[2] ?? '0'),
      flags: parseInt(f[3] ?? '0', 16),
      metric: Number(f[6]),
      mask: decodeIPv4(f[7] ?? '0'),
    });
  }
  return routes;
}

export interface Route6 {
  iface: string;
  destination: string;
  prefixLength: number;
  nextHop: string;
  metric: number;
  flags: number;
}

/** /proc/<pid>/net/ipv6_route. Unlike net/tcp6, these addresses are plain big-endian hex. */
export function parseIPv6Routes(text: string): Route6[] {
  const routes: Route6[] = [];
  const fmt = (hex: string): string =>
    new URL(`http://[${hex.match(/.{4}/g)?.join(':') ?? '::'}]/`).hostname.slice(1, -1);
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    routes.push({
      destination: fmt(f[0] ?? ''),
      prefixLength: parseInt(f[1] ?? '0', 16),
      nextHop: fmt(f[4] ?? ''),
      metric: parseInt(f[5] ?? '0', 16),
      flags: parseInt(f[8] ?? '0', 16),
      iface: f[9] ?? '',
    });
  }
  return routes;
}
