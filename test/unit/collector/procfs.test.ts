import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeCapabilities,
  decodeIPv4,
  decodeIPv6,
  parseCgroup,
  parseInetSockets,
  parseIPv6Routes,
  parseMaps,
  parseMountinfo,
  parseNulList,
  parseRoutes,
  parseStat,
  parseStatus,
  parseUnixSockets,
} from '../../../src/collector/procfs.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/proc/${name}`, import.meta.url), 'utf8');

describe('addresses in /proc/net', () => {
  it('decodes little-endian IPv4 words', () => {
    expect(decodeIPv4('0100007F')).toBe('127.0.0.1');
    expect(decodeIPv4('010200C0')).toBe('192.0.2.1');
    expect(decodeIPv4('00000000')).toBe('0.0.0.0');
  });
  it('decodes IPv6 words to the compressed form, and v4-mapped addresses to dotted form', () => {
    expect(decodeIPv6('00000000000000000000000001000000')).toBe('::1');
    expect(decodeIPv6('B80D0120000000000000000001000000')).toBe('2001:db8::1');
    expect(decodeIPv6('0000000000000000FFFF00000500000A')).toBe('::ffff:10.0.0.5');
    expect(decodeIPv6('00000000000000000000000000000000')).toBe('::');
  });
});

describe('parseInetSockets', () => {
  it('reads a captured tcp6 listener on ::1', () => {
    const [s] = parseInetSockets(fixture('net-tcp6'), 'tcp6');
    expect(s).toMatchObject({
      localAddress: '::1',
      localPort: 45678,
      remoteAddress: '::',
      remotePort: 0,
      state: 'LISTEN',
    });
    expect(s?.inode).toBeGreaterThan(0);
  });
  it('reads established and listening tcp6 sockets with uid and inode', () => {
    const sockets = parseInetSockets(fixture('net-tcp6-synthetic'), 'tcp6');
    expect(sockets).toEqual([
      {
        protocol: 'tcp6',
        localAddress: '::ffff:10.0.0.5',
        localPort: 8080,
        remoteAddress: '::ffff:10.0.0.7',
        remotePort: 54321,
        state: 'ESTABLISHED',
        uid: 1000,
        inode: 424242,
      },
      {
        protocol: 'tcp6',
        localAddress: '2001:db8::1',
        localPort: 443,
        remoteAddress: '::',
        remotePort: 0,
        state: 'LISTEN',
        uid: 0,
        inode: 515151,
      },
    ]);
  });
  it('reads a captured IPv4 table: a listener on 127.0.0.1:45679 and an established connection to it', () => {
    const sockets = parseInetSockets(fixture('net-tcp'), 'tcp');
    expect(sockets.find((s) => s.localPort === 45679 && s.state === 'LISTEN')?.localAddress).toBe(
      '127.0.0.1',
    );
    expect(sockets.find((s) => s.remotePort === 45679)?.state).toBe('ESTABLISHED');
  });
  it('names an unconnected UDP socket UNCONN, as ss does', () => {
    const line =
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n' +
      '  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n';
    expect(parseInetSockets(line, 'udp')[0]).toMatchObject({ localPort: 53, state: 'UNCONN', inode: 999 });
  });
  it('ignores the header and blank lines', () => {
    expect(parseInetSockets(fixture('net-udp'), 'udp')).toEqual([]);
  });
});

describe('parseUnixSockets', () => {
  it('reads listeners, connected sockets and paths with spaces', () => {
    const sockets = parseUnixSockets(fixture('net-unix'));
    expect(sockets.find((s) => s.path === '/tmp/amber fixture.sock')).toMatchObject({
      type: 'STREAM',
      state: 'LISTEN',
      inode: 17365,
    });
    expect(sockets.find((s) => s.inode === 1082)).toMatchObject({ state: 'CONNECTED', path: '' });
  });
});

describe('parseStatus', () => {
  it('decodes the capabilities, NSpid and seccomp of a runc container init', () => {
    const s = parseStatus(fixture('status-runc-init'));
    expect(s.name).toBe('sleep');
    expect(s.nspid).toHaveLength(2);
    expect(s.nspid[1]).toBe(1);
    expect(s.capabilities.effective).toEqual(['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE']);
    expect(s.capabilities.ambient).toEqual([]);
    expect(s.seccomp).toBe('disabled');
    expect(s.uids).toEqual([0, 0, 0, 0]);
  });
  it('decodes a full set (privileged) and unknown future bits', () => {
    expect(decodeCapabilities('000001ffffffffff')).toHaveLength(41);
    expect(decodeCapabilities('000001ffffffffff')).toContain('CAP_SYS_ADMIN');
    expect(decodeCapabilities('0000040000000000')).toEqual(['CAP_42']);
    expect(decodeCapabilities('0000000000200000')).toEqual(['CAP_SYS_ADMIN']);
  });
  it('reads seccomp filter mode and no_new_privs', () => {
    const s = parseStatus(
      'Name:\tnginx\nPid:\t42\nPPid:\t1\nUid:\t101\t101\t101\t101\nSeccomp:\t2\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\n',
    );
    expect(s).toMatchObject({
      name: 'nginx',
      pid: 42,
      ppid: 1,
      seccomp: 'filter',
      noNewPrivs: true,
      uids: [101, 101, 101, 101],
    });
  });
});

describe('parseStat', () => {
  it('reads ppid and start time of a captured process', () => {
    const s = parseStat(fixture('stat-runc-init'));
    expect(s.comm).toBe('sleep');
    expect(s.startTicks).toBeGreaterThan(0);
  });
  it('handles a comm with spaces and parentheses', () => {
    const s = parseStat('77 (evil) (x y) S 12 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1 1 1');
    expect(s).toMatchObject({ pid: 77, comm: 'evil) (x y', state: 'S', ppid: 12, startTicks: 123456 });
  });
  it('rejects text that is not a stat line', () => {
    expect(() => parseStat('garbage')).toThrow(/not a \/proc/);
  });
});

describe('parseMaps', () => {
  it('reads a captured static binary map with [vvar] and [vsyscall]', () => {
    const maps = parseMaps(fixture('maps-runc-init'));
    expect(maps[0]).toMatchObject({ perms: 'r--p', path: '/bin/busybox', start: 0x400000n, end: 0x401000n });
    expect(maps.map((m) => m.path)).toContain('[vvar]');
    expect(maps.at(-1)?.start).toBe(0xffffffffff600000n);
  });
  it('keeps spaces and the (deleted) marker in paths, and anonymous maps as empty paths', () => {
    const maps = parseMaps(fixture('maps-synthetic'));
    expect(maps.map((m) => m.path)).toEqual(['/tmp/my dir/x (deleted)', '/memfd:evil (deleted)', '']);
  });
});

describe('parseMountinfo', () => {
  it('unescapes spaces in mount points', () => {
    const m = parseMountinfo(fixture('mountinfo-host')).find((x) => x.mountPoint.startsWith('/tmp/dir'));
    expect(m).toMatchObject({ mountPoint: '/tmp/dir with space', fsType: 'tmpfs', root: '/' });
  });
  it('reads the overlay root of a container with its lower and upper dirs', () => {
    const root = parseMountinfo(fixture('mountinfo-runc-init')).find((x) => x.mountPoint === '/');
    expect(root?.fsType).toBe('overlay');
    expect(root?.superOptions.upperdir).toBe('/tmp/amber-runc-XXXX/upper');
    expect(root?.superOptions.lowerdir?.split(':')).toHaveLength(2);
  });
  it('unescapes commas in super options and optional fields before the separator', () => {
    const line = '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue,x=a\\054b\n';
    expect(parseMountinfo(line)[0]).toMatchObject({
      root: '/mnt1',
      mountPoint: '/mnt2',
      fsType: 'ext3',
      source: '/dev/root',
      superOptions: { rw: '', errors: 'continue', x: 'a,b' },
    });
  });
});

describe('parseCgroup', () => {
  it('reads cgroup v1 hierarchies with several controllers and named hierarchies', () => {
    const entries = parseCgroup(fixture('cgroup-v1'));
    expect(entries.find((e) => e.controllers.includes('name=systemd'))?.path).toBe('/');
    expect(entries.find((e) => e.hierarchy === 0)).toEqual({ hierarchy: 0, controllers: [], path: '/' });
    expect(parseCgroup('3:cpu,cpuacct:/kubepods/pod1/abc\n')[0]?.controllers).toEqual(['cpu', 'cpuacct']);
  });
  it('reads the cgroup v2 path of a containerd container', () => {
    const [e] = parseCgroup(fixture('cgroup-v2-containerd'));
    expect(e?.hierarchy).toBe(0);
    expect(e?.path).toMatch(/cri-containerd-3f9a1c0e5b7d.*\.scope$/);
  });
  it('keeps colons inside the path', () => {
    expect(parseCgroup('0::/a:b\n')[0]?.path).toBe('/a:b');
  });
});

describe('routes and lists', () => {
  it('reads IPv4 routes with gateway and mask', () => {
    const routes = parseRoutes(fixture('net-route'));
    expect(routes[0]).toMatchObject({
      iface: 'eth0',
      destination: '0.0.0.0',
      gateway: '192.0.2.1',
      mask: '0.0.0.0',
    });
    expect(routes[1]).toMatchObject({ destination: '192.0.2.0', mask: '255.255.255.0' });
  });
  it('reads IPv6 routes', () => {
    const routes = parseIPv6Routes(fixture('net-ipv6_route'));
    expect(routes[0]).toMatchObject({ destination: 'fd00::', prefixLength: 64, iface: 'eth0' });
    expect(routes.find((r) => r.prefixLength === 0)?.nextHop).toBe('fd00::1');
  });
  it('splits NUL lists without a trailing empty entry', () => {
    expect(parseNulList('sh\0-c\0echo hi\0')).toEqual(['sh', '-c', 'echo hi']);
    expect(parseNulList('')).toEqual([]);
  });
});
