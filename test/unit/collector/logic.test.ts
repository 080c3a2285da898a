import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSize, toCollectOptions, type CollectCliOptions } from '../../../src/cmd/collect.js';
import { assessExposure, type ExposureInput } from '../../../src/collector/exposure.js';
import { ContainerNotFoundError, normalizeContainerId } from '../../../src/collector/locate.js';
import { artifactSegment } from '../../../src/collector/logs.js';
import { dumpableRegions } from '../../../src/collector/memory.js';
import {
  classifyFd,
  containerCgroups,
  inCgroups,
  processTree,
  type ProcessSnapshot,
} from '../../../src/collector/processes.js';
import {
  parseCgroup,
  parseMaps,
  parseMountinfo,
  parseStatus,
  type ProcStatus,
} from '../../../src/collector/procfs.js';
import { CollectionReport, collectorMetrics } from '../../../src/collector/report.js';
import { major, minor } from '../../../src/collector/tar.js';
import { createRegistry } from '../../../src/observability/metrics.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/proc/${name}`, import.meta.url), 'utf8');
const id = 'a'.repeat(64);

function status(capEff: string, extra = ''): ProcStatus {
  return parseStatus(
    `Name:\tapp\nPid:\t10\nPPid:\t1\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t${capEff}\nSeccomp:\t2\n${extra}`,
  );
}
const ns = (suffix: string): Record<string, string> => ({
  pid: `pid:[${suffix}1]`,
  net: `net:[${suffix}2]`,
  ipc: `ipc:[${suffix}3]`,
  uts: `uts:[${suffix}4]`,
  mnt: `mnt:[${suffix}5]`,
  cgroup: `cgroup:[${suffix}6]`,
});
const mount = (mountPoint: string, root: string, fsType = 'ext4'): string =>
  `100 70 8:1 ${root.replace(/ /g, '\\040')} ${mountPoint.replace(/ /g, '\\040')} rw - ${fsType} /dev/vda rw\n`;

describe('assessExposure', () => {
  const cases: { name: string; input: ExposureInput; expect: string[] }[] = [
    {
      name: 'a confined container',
      input: {
        initStatus: status('0000000000000000'),
        capLastCap: 40,
        namespaces: ns('40'),
        hostNamespaces: ns('99'),
      },
      expect: [],
    },
    {
      name: 'privileged: every kernel capability',
      input: { initStatus: status('000001ffffffffff'), capLastCap: 40 },
      expect: ['privileged'],
    },
    {
      name: 'privileged: every capability the host has',
      input: {
        initStatus: status('000001fffeffffff'),
        capLastCap: 40,
        hostCapabilities: parseStatus('CapEff:\t000001fffeffffff\n').capabilities.effective,
      },
      expect: ['privileged'],
    },
    {
      name: 'CAP_SYS_ADMIN alone',
      input: { initStatus: status('0000000000200000'), capLastCap: 40 },
      expect: ['dangerous-capability'],
    },
    {
      name: 'host pid and net namespaces',
      input: { namespaces: { ...ns('40'), pid: 'pid:[991]', net: 'net:[992]' }, hostNamespaces: ns('99') },
      expect: ['host-namespace', 'host-namespace'],
    },
    {
      name: 'docker.sock bind',
      input: { mounts: parseMountinfo(mount('/var/run/docker.sock', '/run/docker.sock')) },
      expect: ['runtime-socket'],
    },
    {
      name: 'containerd.sock under another name',
      input: { mounts: parseMountinfo(mount('/sock', '/run/containerd/containerd.sock')) },
      expect: ['runtime-socket'],
    },
    {
      name: 'service account token',
      input: {
        mounts: parseMountinfo(
          mount(
            '/var/run/secrets/kubernetes.io/serviceaccount',
            '/var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access',
            'tmpfs',
          ),
        ),
      },
      expect: ['service-account-token'],
    },
    {
      name: 'host root at /host',
      input: { mounts: parseMountinfo(mount('/host', '/')) },
      expect: ['sensitive-host-path'],
    },
    {
      name: 'host /etc',
      input: { mounts: parseMountinfo(mount('/host etc', '/etc')) },
      expect: ['sensitive-host-path'],
    },
    {
      name: 'host proc file system elsewhere',
      input: { mounts: parseMountinfo(mount('/host/proc', '/', 'proc')) },
      expect: ['sensitive-host-path'],
    },
    {
      name: "the runtime's own proc, tmpfs and overlay root",
      input: { mounts: parseMountinfo(fixture('mountinfo-runc-init')) },
      expect: [],
    },
    {
      name: 'an emptyDir volume',
      input: {
        mounts: parseMountinfo(
          mount('/data', '/var/lib/kubelet/pods/x/volumes/kubernetes.io~empty-dir/data'),
        ),
      },
      expect: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(assessExposure(c.input).map((i) => i.id)).toEqual(c.expect);
    });
  }
  it('flags no seccomp and root as the lesser findings', () => {
    const s = parseStatus('Uid:\t0\t0\t0\t0\nCapEff:\t0000000000000000\nSeccomp:\t0\n');
    expect(assessExposure({ initStatus: s }).map((i) => [i.id, i.severity])).toEqual([
      ['no-seccomp', 'medium'],
      ['runs-as-root', 'low'],
    ]);
  });
});

describe('normalizeContainerId', () => {
  it('accepts full, short and runtime:// IDs', () => {
    expect(normalizeContainerId(id)).toBe(id);
    expect(normalizeContainerId('ABCDEF012345')).toBe('abcdef012345');
    expect(normalizeContainerId(`containerd://${id}`)).toBe(id);
    expect(normalizeContainerId(`cri-o://${id.slice(0, 12)}`)).toBe(id.slice(0, 12));
  });
  it('rejects what is not an ID, with the reason', () => {
    for (const bad of ['', 'abc', '../../etc', 'g'.repeat(64), 'a'.repeat(65)]) {
      expect(() => normalizeContainerId(bad)).toThrow(ContainerNotFoundError);
    }
    expect(() => normalizeContainerId('xyz')).toThrow(/expected 12 to 64 hex digits/);
  });
});

describe('container membership', () => {
  it('keys on the cgroups named after the container, in any hierarchy', () => {
    const init = parseCgroup(`4:memory:/sandbox/x/${id}\n3:cpuset:/\n0::/${id}\n`);
    const keys = containerCgroups(init, id);
    expect(keys.map((k) => k.hierarchy)).toEqual([4, 0]);
    expect(inCgroups(parseCgroup(`0::/${id}/child\n`), keys)).toBe(true);
    expect(inCgroups(parseCgroup(`0::/${id}x\n`), keys)).toBe(false);
    expect(inCgroups(parseCgroup('0::/\n4:memory:/sandbox/x\n'), keys)).toBe(false);
  });
  it('falls back to every non-root cgroup when none is named after the ID', () => {
    expect(containerCgroups(parseCgroup('0::/kubepods/pod1/ctr\n1:cpu:/\n'), id).map((k) => k.path)).toEqual([
      '/kubepods/pod1/ctr',
    ]);
  });
});

describe('processTree', () => {
  it('nests children under parents; processes whose parent is outside are roots', () => {
    const p = (pid: number, ppid: number): ProcessSnapshot => ({ pid, ppid, comm: `p${pid}`, errors: {} });
    const tree = processTree([p(10, 1), p(11, 10), p(12, 11), p(20, 5)]);
    expect(tree.map((n) => n.pid)).toEqual([10, 20]);
    expect(tree[0]?.children[0]?.children[0]?.pid).toBe(12);
  });
});

describe('small decoders', () => {
  it('classifies file descriptors', () => {
    expect(classifyFd('/memfd:payload (deleted)')).toBe('memfd');
    expect(classifyFd('/tmp/x (deleted)')).toBe('deleted-file');
    expect(classifyFd('socket:[123]')).toBe('socket');
    expect(classifyFd('pipe:[9]')).toBe('pipe');
    expect(classifyFd('anon_inode:[eventpoll]')).toBe('anon');
    expect(classifyFd('/etc/passwd')).toBe('file');
  });
  it('splits dev_t into major and minor', () => {
    expect([major(0), minor(0)]).toEqual([0, 0]);
    expect([major(0x0801), minor(0x0801)]).toEqual([8, 1]);
    expect([major(0x10300), minor(0x10300)]).toEqual([259, 0]);
    // makedev(1, 0x1234): the minor's high bits sit above the major's.
    expect([major(0x1200134), minor(0x1200134)]).toEqual([1, 0x1234]);
  });
  it('skips kernel pages and unreadable regions when dumping memory', () => {
    const regions = dumpableRegions(parseMaps(fixture('maps-runc-init')));
    expect(regions.map((r) => r.path)).not.toContain('[vvar]');
    expect(regions.map((r) => r.path)).not.toContain('[vsyscall]');
    expect(regions.map((r) => r.path)).toContain('[heap]');
    expect(regions.every((r) => r.perms.startsWith('r'))).toBe(true);
  });
  it('turns file names into artifact path segments', () => {
    expect(artifactSegment('checkpoint-web_shop-app-2026-11-23T03:00:00Z.tar')).toBe(
      'checkpoint-web_shop-app-2026-11-23T03_00_00Z.tar',
    );
    expect(artifactSegment('.hidden')).toBe('x.hidden');
  });
});

describe('CollectionReport', () => {
  it('keeps the termination summary under 4 KiB however many failures there are', () => {
    const r = new CollectionReport(collectorMetrics(createRegistry()), {
      caseId: 'c',
      containerId: id,
      runtime: 'runc',
    });
    for (let i = 0; i < 500; i++) r.fail(`thing ${i} ${'x'.repeat(100)}`, new Error('EIO: boom'));
    r.skip('memory', 'cap');
    const s = r.summary(undefined, 'fatal '.repeat(200));
    expect(Buffer.byteLength(s)).toBeLessThan(4096);
    expect(JSON.parse(s)).toMatchObject({ ok: false, failed: 500, skipped: 1, collected: 0 });
    expect((JSON.parse(s) as { firstFailures: string[] }).firstFailures.length).toBeGreaterThan(5);
  });
});

describe('collect CLI options', () => {
  const base: CollectCliOptions = {
    containerId: id,
    runtime: 'auto',
    case: 'c1',
    region: 'us-east-1',
    pathStyle: false,
    retentionMode: 'COMPLIANCE',
    retentionPeriod: '90d',
    legalHold: false,
    fullRootfs: false,
    memory: true,
    procRoot: '/proc',
    hostRoot: '/',
    hostPid: '1',
    terminationMessagePath: '/dev/termination-log',
  };
  it('parses Kubernetes-style sizes', () => {
    expect(parseSize('512Mi')).toBe(512 * 1024 * 1024);
    expect(parseSize('2Gi')).toBe(2 * 1024 ** 3);
    expect(parseSize('1000')).toBe(1000);
    expect(() => parseSize('lots')).toThrow(/invalid size/);
  });
  it('maps flags to collector options', () => {
    const o = toCollectOptions({
      ...base,
      fullRootfs: true,
      memory: false,
      maxFileSize: '1Mi',
      pod: 'web',
      namespace: 'shop',
    });
    expect(o.groups).toContain('fullRootfs');
    expect(o.groups).not.toContain('memory');
    expect(o.caps?.maxFileBytes).toBe(1024 * 1024);
    expect(o).toMatchObject({ pod: 'web', namespace: 'shop', hostReferencePid: 1 });
  });
  it('rejects an unknown group by name', () => {
    expect(() => toCollectOptions({ ...base, groups: 'processes,telepathy' })).toThrow(
      /unknown artifact group "telepathy"/,
    );
  });
});
