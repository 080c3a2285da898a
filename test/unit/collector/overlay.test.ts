/**
 * Where the writable layer and the image layers are (ADR 0017): planLayout reads the host's
 * mount table at the runtime's rootfs and refuses any layer outside the snapshotter roots;
 * openLayer and LayerLookup never follow a symlink out of a layer.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { locateContainer, type Runtime } from '../../../src/collector/locate.js';
import {
  LayerLookup,
  lowerLayers,
  openLayer,
  planLayout,
  underRoot,
} from '../../../src/collector/overlay.js';
import { parseMountinfo } from '../../../src/collector/procfs.js';

const snaps = '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots';
const rootfs = '/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs';
const line = (id: number, mountPoint: string, fs: string, opts: string): string =>
  `${id} 27 0:${id} / ${mountPoint} rw,relatime - ${fs} ${fs} rw,${opts}`;
const containerd = `lowerdir=${snaps}/2/fs:${snaps}/1/fs,upperdir=${snaps}/3/fs,workdir=${snaps}/3/work`;

describe('planLayout', () => {
  const cases: {
    name: string;
    mountinfo: string[];
    roots?: string[];
    expect:
      | {
          upperDir: string;
          lowerDirs: string[];
          dataDirs?: string[];
          workDir?: string;
          lowerDirsRelativeTo?: string;
        }
      | RegExp;
  }[] = [
    {
      name: "containerd's overlay at the task's rootfs",
      mountinfo: [line(20, '/', 'ext4', 'discard'), line(40, rootfs, 'overlay', containerd)],
      expect: {
        upperDir: `${snaps}/3/fs`,
        workDir: `${snaps}/3/work`,
        lowerDirs: [`${snaps}/2/fs`, `${snaps}/1/fs`],
      },
    },
    {
      name: 'another container overlay elsewhere is not this one',
      mountinfo: [line(40, `${rootfs}x`, 'overlay', containerd)],
      expect: /nothing is mounted at the runtime's rootfs/,
    },
    {
      name: 'the topmost of two mounts at the rootfs is the one the container sees',
      mountinfo: [
        line(40, rootfs, 'overlay', `lowerdir=${snaps}/9/fs,upperdir=${snaps}/9/up,workdir=${snaps}/9/w`),
        line(41, rootfs, 'overlay', containerd),
      ],
      expect: {
        upperDir: `${snaps}/3/fs`,
        workDir: `${snaps}/3/work`,
        lowerDirs: [`${snaps}/2/fs`, `${snaps}/1/fs`],
      },
    },
    {
      name: 'mountinfo octal escapes (space, tab, comma, backslash) and overlay escapes (\\: \\,)',
      mountinfo: [
        line(
          40,
          rootfs.replace('rootfs', 'root\\040fs'),
          'overlay',
          `lowerdir=${snaps}/a\\0401/fs:${snaps}/b\\134:2/fs,upperdir=${snaps}/u\\134\\054x/fs,workdir=${snaps}/w\\011/work`,
        ),
      ],
      expect: /nothing is mounted/,
    },
    {
      name: 'escapes are undone in every layer path',
      mountinfo: [
        line(
          40,
          rootfs,
          'overlay',
          `lowerdir=${snaps}/a\\0401/fs:${snaps}/b\\134:2/fs,upperdir=${snaps}/u\\134\\054x/fs,workdir=${snaps}/w\\011/work`,
        ),
      ],
      expect: {
        upperDir: `${snaps}/u,x/fs`,
        workDir: `${snaps}/w\t/work`,
        lowerDirs: [`${snaps}/a 1/fs`, `${snaps}/b:2/fs`],
      },
    },
    {
      name: 'data-only layers after "::" are kept apart from the merged ones',
      mountinfo: [
        line(
          40,
          rootfs,
          'overlay',
          `lowerdir=${snaps}/2/fs:${snaps}/1/fs::${snaps}/d1/fs::${snaps}/d2/fs,upperdir=${snaps}/3/fs`,
        ),
      ],
      expect: {
        upperDir: `${snaps}/3/fs`,
        lowerDirs: [`${snaps}/2/fs`, `${snaps}/1/fs`],
        dataDirs: [`${snaps}/d1/fs`, `${snaps}/d2/fs`],
      },
    },
    {
      name: 'the fsconfig form: one lowerdir+ per layer, then datadir+ (the last one is not all)',
      mountinfo: [
        line(
          40,
          rootfs,
          'overlay',
          `upperdir=${snaps}/3/fs,workdir=${snaps}/3/work,lowerdir+=${snaps}/2/fs,lowerdir+=${snaps}/1/fs,datadir+=${snaps}/d/fs`,
        ),
      ],
      expect: {
        upperDir: `${snaps}/3/fs`,
        workDir: `${snaps}/3/work`,
        lowerDirs: [`${snaps}/2/fs`, `${snaps}/1/fs`],
        dataDirs: [`${snaps}/d/fs`],
      },
    },
    {
      name: 'an upperdir outside the roots (another tenant, the host) is refused',
      mountinfo: [
        line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=/etc,workdir=${snaps}/3/work`),
      ],
      expect: /upperdir "\/etc" is outside the snapshotter roots/,
    },
    {
      name: 'a root given as a prefix of a name is not a root',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=${snaps}-evil/3/fs`)],
      expect: /upperdir ".*snapshots-evil\/3\/fs" is outside/,
    },
    {
      name: 'a lowerdir outside the roots is refused',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs:/root,upperdir=${snaps}/3/fs`)],
      expect: /lowerdir "\/root" is outside/,
    },
    {
      name: 'a data-only layer outside the roots is refused',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs::/srv,upperdir=${snaps}/3/fs`)],
      expect: /data-only lowerdir "\/srv" is outside/,
    },
    {
      name: 'a workdir outside the roots is refused',
      mountinfo: [
        line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=${snaps}/3/fs,workdir=/tmp/w`),
      ],
      expect: /workdir "\/tmp\/w" is outside/,
    },
    {
      name: '".." climbing out of a root is refused, not normalised',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=${snaps}/../../../../../etc`)],
      expect: /has an empty, "." or ".." component/,
    },
    {
      name: 'the root itself is not a layer',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=${snaps}`)],
      expect: /is outside the snapshotter roots/,
    },
    {
      name: 'a relative path is refused',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs,upperdir=snapshots/3/fs`)],
      expect: /is not an absolute path/,
    },
    {
      name: "containerd's compacted form: lowerdirs relative to the snapshots directory",
      mountinfo: [
        line(40, rootfs, 'overlay', `lowerdir=2/fs:1/fs,upperdir=${snaps}/3/fs,workdir=${snaps}/3/work`),
      ],
      expect: {
        upperDir: `${snaps}/3/fs`,
        workDir: `${snaps}/3/work`,
        lowerDirs: [`${snaps}/2/fs`, `${snaps}/1/fs`],
        lowerDirsRelativeTo: snaps,
      },
    },
    {
      name: 'a relative lowerdir climbing out of the root is refused',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=../../../../etc,upperdir=${snaps}/3/fs`)],
      expect: /lowerdir .* has an empty, "." or ".." component/,
    },
    {
      name: 'a read-only root has nothing written',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=${snaps}/1/fs:${snaps}/2/fs`)],
      expect: /no upperdir/,
    },
    {
      name: 'a rootfs that is not an overlay',
      mountinfo: [line(40, rootfs, 'ext4', 'discard')],
      expect: /is ext4, not overlay/,
    },
    {
      name: 'a second configured root (the test harness) is accepted',
      mountinfo: [line(40, rootfs, 'overlay', `lowerdir=/opt/base/l,upperdir=/tmp/amber-runc-1/upper`)],
      roots: [snaps, '/tmp/amber-runc-1/', '/opt/base'],
      expect: { upperDir: '/tmp/amber-runc-1/upper', lowerDirs: ['/opt/base/l'] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planLayout(c.mountinfo.join('\n'), { rootfs }, c.roots ?? [snaps]);
      if (c.expect instanceof RegExp) {
        expect('refused' in plan && plan.refused).toMatch(c.expect);
        return;
      }
      if (!('layout' in plan)) throw new Error(`refused: ${plan.refused}`);
      expect(plan.layout).toMatchObject({ dataDirs: [], ...c.expect, mountPoint: rootfs });
      if (c.expect.workDir === undefined) expect(plan.layout.workDir).toBeUndefined();
      if (c.expect.lowerDirsRelativeTo === undefined) expect(plan.layout.lowerDirsRelativeTo).toBeUndefined();
    });
  }

  it("takes nothing from the container's own mountinfo even when it is the only overlay on /", () => {
    // What PID 1 shows after unshare -Urm and an overlay mounted on / naming a host directory.
    const lying = line(
      66,
      '/',
      'overlay',
      `lowerdir=${snaps}/7/fs,upperdir=${snaps}/7/fs,workdir=${snaps}/7/work`,
    );
    expect(planLayout(lying, { rootfs }, [snaps])).toEqual({
      refused: expect.stringMatching(/nothing is mounted at the runtime's rootfs/) as unknown,
    });
  });

  it("finds the overlay by the root's device when no runtime state names the rootfs", () => {
    const text = [line(20, '/', 'ext4', 'discard'), line(40, rootfs, 'overlay', containerd)].join('\n');
    expect(planLayout(text, { device: '0:40' }, [snaps])).toMatchObject({
      layout: { upperDir: `${snaps}/3/fs`, mountPoint: rootfs, device: '0:40' },
    });
    // The root's device of a chroot into an overlay of the suspect's own namespace: not on the host.
    expect(planLayout(text, { device: '0:66' }, [snaps])).toEqual({
      refused: "nothing is mounted at the container root's device 0:66 in the host's mount table",
    });
    // A non-overlay mount with that device (a bind of the host's disk) is never taken for it.
    expect(planLayout(text, { device: '0:20' }, [snaps])).toMatchObject({ refused: /nothing is mounted/ });
  });

  it('agrees with parseMountinfo on the fields both read', () => {
    const text = line(40, rootfs, 'overlay', containerd);
    const plan = planLayout(text, { rootfs }, [snaps]);
    const [m] = parseMountinfo(text);
    expect('layout' in plan && plan.layout.upperDir).toBe(m?.superOptions.upperdir);
    expect('layout' in plan && plan.layout.device).toBe(m?.device);
  });
});

describe('lowerLayers and underRoot', () => {
  it('keeps a legacy lowerdir ahead of lowerdir+ and drops empty layers', () => {
    expect(lowerLayers([['lowerdir', '/a::/d']])).toEqual({ lowerDirs: ['/a'], dataDirs: ['/d'] });
    expect(lowerLayers([['lowerdir', '/a\\::/b']])).toEqual({ lowerDirs: ['/a:', '/b'], dataDirs: [] });
    expect(lowerLayers([])).toEqual({ lowerDirs: [], dataDirs: [] });
    // lowerdir+ and datadir+ are single paths the kernel takes verbatim: a backslash is part of the name.
    expect(
      lowerLayers([
        ['lowerdir+', '/a\\:b'],
        ['datadir+', '/d'],
      ]),
    ).toEqual({ lowerDirs: ['/a\\:b'], dataDirs: ['/d'] });
  });
  it('finds the root a path lies strictly below', () => {
    expect(underRoot('/s/a/b', ['/x', '/s/'])).toEqual({ root: '/s', rel: 'a/b' });
    expect(underRoot('/s/a//b', ['/s'])).toEqual({ refused: expect.stringMatching(/empty/) as unknown });
    expect(underRoot('/s/./a', ['/s'])).toEqual({ refused: expect.stringMatching(/"\."/) as unknown });
    expect(underRoot('/sa', ['/s'])).toEqual({ refused: expect.stringMatching(/outside/) as unknown });
  });
});

describe('openLayer and LayerLookup on a real directory tree', () => {
  const top = mkdtempSync(join(tmpdir(), 'amber-layers-'));
  const hostSecret = mkdtempSync(join(tmpdir(), 'amber-layers-host-'));
  afterAll(() => {
    rmSync(top, { recursive: true, force: true });
    rmSync(hostSecret, { recursive: true, force: true });
  });
  const root = join(top, 'snapshots');
  mkdirSync(join(root, '1/fs/etc/app'), { recursive: true });
  writeFileSync(join(root, '1/fs/etc/app/conf'), 'x');
  writeFileSync(join(hostSecret, 'passwd'), 'host');
  mkdirSync(join(hostSecret, 'dir'));
  // In the layer: /etc/evil -> a host directory, absolute; the host would resolve it.
  symlinkSync(hostSecret, join(root, '1/fs/etc/evil'));
  // On the way to a layer: snapshots/2 -> a host directory.
  symlinkSync(hostSecret, join(root, '2'));
  mkdirSync(join(root, '3'));
  symlinkSync(hostSecret, join(root, '3/fs'));

  it('opens a layer below the root', async () => {
    const d = await openLayer('/', [root], join(root, '1/fs'));
    expect(await d.names()).toEqual(['etc']);
    await d.close();
  });
  it('refuses a symlink on the way to the layer and a layer that is a symlink', async () => {
    await expect(openLayer('/', [root], join(root, '2/dir'))).rejects.toThrow(/is a symlink/);
    await expect(openLayer('/', [root], join(root, '3/fs'))).rejects.toThrow(/is a symlink: not a layer/);
  });
  it('refuses a layer outside the roots before touching it', async () => {
    await expect(openLayer('/', [root], join(hostSecret, 'dir'))).rejects.toThrow(
      /outside the snapshotter roots/,
    );
  });
  it('looks paths up without following a symlink of the layer into the host', async () => {
    const l = new LayerLookup(await openLayer('/', [root], join(root, '1/fs')));
    try {
      expect(await l.has('etc/app/conf')).toBe(true);
      expect(await l.has('etc/evil')).toBe(true);
      // Through the symlink, the host has passwd and dir: the layer does not.
      expect(await l.has('etc/evil/passwd')).toBe(false);
      expect(await l.names('etc/evil')).toEqual([]);
      expect(await l.names('etc')).toEqual(['app', 'evil']);
      expect(await l.has('etc/app/conf')).toBe(true);
      expect(await l.has('nope/x')).toBe(false);
      expect(await l.names('etc/app')).toEqual(['conf']);
    } finally {
      await l.close();
    }
  });
});

describe("locateContainer: the rootfs the runtime's own state names", () => {
  const hostRoot = mkdtempSync(join(tmpdir(), 'amber-state-'));
  afterAll(() => rmSync(hostRoot, { recursive: true, force: true }));
  const id = 'c'.repeat(64);
  const write = (rel: string, content: string): void => {
    mkdirSync(join(hostRoot, rel, '..'), { recursive: true });
    writeFileSync(join(hostRoot, rel), content);
  };
  const task = `/run/containerd/io.containerd.runtime.v2.task/k8s.io/${id}`;
  // A live PID stands in for the container's init: this test process.
  write(`${task}/init.pid`, String(process.pid));
  write(`${task}/config.json`, JSON.stringify({ root: { path: 'rootfs' } }));
  const crio = `/run/containers/storage/overlay-containers/${id}`;
  write(`${crio}/userdata/pidfile`, String(process.pid));
  write(
    `${crio}/userdata/config.json`,
    JSON.stringify({ root: { path: '/var/lib/containers/storage/overlay/l/merged' } }),
  );
  write(
    `/run/runc/${id}/state.json`,
    JSON.stringify({ init_process_pid: process.pid, config: { rootfs: '/b/rootfs' } }),
  );
  write(`/run/bare/${id}/init.pid`, String(process.pid));

  const cases: { runtime: Runtime; roots?: string[]; rootfs: string | undefined }[] = [
    { runtime: 'containerd', rootfs: `${task}/rootfs` },
    { runtime: 'cri-o', rootfs: '/var/lib/containers/storage/overlay/l/merged' },
    { runtime: 'runc', rootfs: '/b/rootfs' },
    { runtime: 'containerd', roots: ['/run/bare'], rootfs: undefined },
  ];
  for (const c of cases) {
    it(`${c.runtime}${c.roots ? ` under ${c.roots.join()}` : ''}: ${c.rootfs ?? 'none'}`, async () => {
      const found = await locateContainer({
        containerId: id,
        runtime: c.runtime,
        procRoot: '/proc',
        hostRoot,
        ...(c.roots && { runtimeRoots: { [c.runtime]: c.roots } }),
      });
      expect(found.initPid).toBe(process.pid);
      expect(found.rootfs).toBe(c.rootfs);
    });
  }
});
