import { describe, expect, it } from 'vitest';
import { pack } from 'tar-stream';
import {
  CheckpointSummarizer,
  checkArchivePath,
  imageEntries,
  parseCoreComm,
  parsePstree,
  protoFields,
  type SummaryLimits,
} from '../../../src/collector/checkpoint.js';

const root = '/var/lib/kubelet/checkpoints';
const want = { root, namespace: 'shop', pod: 'web', container: 'app' };
const ts = '2026-11-28T14:00:00Z';
const good = `${root}/checkpoint-web_shop-app-${ts}.tar`;

describe('checkArchivePath: only the archive the kubelet names for this container', () => {
  const cases: { name: string; path: unknown; ok: boolean; reason?: RegExp }[] = [
    { name: 'the kubelet’s own answer', path: good, ok: true },
    {
      name: 'with fractional seconds and an offset',
      path: `${root}/checkpoint-web_shop-app-2026-11-28T14:00:00.5+01:00.tar`,
      ok: true,
    },
    { name: 'a ".." out of the directory', path: `${root}/../../../etc/shadow`, ok: false, reason: /"\.\."/ },
    {
      name: 'a ".." that comes back in',
      path: `${root}/../checkpoints/checkpoint-web_shop-app-${ts}.tar`,
      ok: false,
      reason: /"\.\."/,
    },
    {
      name: 'a "." component',
      path: `${root}/./checkpoint-web_shop-app-${ts}.tar`,
      ok: false,
      reason: /"\."/,
    },
    {
      name: 'a double slash',
      path: `${root}//checkpoint-web_shop-app-${ts}.tar`,
      ok: false,
      reason: /empty/,
    },
    {
      name: 'another directory',
      path: `/tmp/checkpoint-web_shop-app-${ts}.tar`,
      ok: false,
      reason: /not directly in/,
    },
    {
      name: 'a subdirectory of the checkpoints dir',
      path: `${root}/x/checkpoint-web_shop-app-${ts}.tar`,
      ok: false,
      reason: /not directly in/,
    },
    { name: 'relative', path: `checkpoint-web_shop-app-${ts}.tar`, ok: false, reason: /absolute/ },
    {
      name: 'another container',
      path: `${root}/checkpoint-web_shop-sidecar-${ts}.tar`,
      ok: false,
      reason: /not named/,
    },
    {
      name: 'another pod',
      path: `${root}/checkpoint-web2_shop-app-${ts}.tar`,
      ok: false,
      reason: /not named/,
    },
    {
      name: 'another namespace',
      path: `${root}/checkpoint-web_shop-prod-app-${ts}.tar`,
      ok: false,
      reason: /not named/,
    },
    {
      name: 'not a tar',
      path: `${root}/checkpoint-web_shop-app-${ts}.tar.gz`,
      ok: false,
      reason: /not named/,
    },
    { name: 'no time', path: `${root}/checkpoint-web_shop-app.tar`, ok: false, reason: /not named/ },
    { name: 'a NUL', path: `${good}\0`, ok: false, reason: /malformed/ },
    { name: 'not a string', path: ['x'], ok: false, reason: /not a string/ },
    { name: 'empty', path: '', ok: false, reason: /not a string/ },
  ];
  it.each(cases)('$name', ({ path, ok, reason }) => {
    const r = checkArchivePath(path, want);
    if (ok) expect(r).toEqual({ path, file: (path as string).split('/').pop() });
    else expect('refused' in r && r.refused).toMatch(reason!);
  });

  it('a root given with a trailing slash is the same directory', () => {
    expect(checkArchivePath(good, { ...want, root: `${root}/` })).toMatchObject({ path: good });
  });
});

// ---- CRIU images built by hand, as CRIU writes them --------------------------------------

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return Buffer.from(out);
}
const vField = (n: number, v: number) => Buffer.concat([varint(n << 3), varint(v)]);
const bField = (n: number, b: Buffer) => Buffer.concat([varint((n << 3) | 2), varint(b.length), b]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
function image(magic: number, entries: Buffer[], common = true): Buffer {
  return Buffer.concat([
    ...(common ? [u32(0x54564319)] : []),
    u32(magic),
    ...entries.flatMap((e) => [u32(e.length), e]),
  ]);
}
const pstreeEntry = (pid: number, ppid: number, threads: number[], packed = true) =>
  Buffer.concat([
    vField(1, pid),
    vField(2, ppid),
    vField(3, pid),
    vField(4, 1),
    ...(packed ? [bField(5, Buffer.concat(threads.map(varint)))] : threads.map((t) => vField(5, t))),
  ]);
const pstree = (...e: Buffer[]) => image(0x50273030, e);
const core = (comm: string) =>
  image(0x55053847, [
    Buffer.concat([
      vField(1, 1),
      bField(2, Buffer.from([0x08, 0x01])),
      bField(
        3,
        Buffer.concat([
          vField(1, 1),
          vField(2, 0),
          vField(3, 0),
          vField(4, 0),
          vField(5, 0),
          bField(6, Buffer.from(comm)),
        ]),
      ),
    ]),
  ]);

describe('CRIU images', () => {
  it('reads the process tree from pstree.img, threads packed or not', () => {
    const img = pstree(pstreeEntry(1, 0, [1]), pstreeEntry(7, 1, [7, 8], false));
    expect(parsePstree(img, 10)).toEqual([
      { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] },
      { pid: 7, ppid: 1, pgid: 7, sid: 1, threads: [7, 8] },
    ]);
  });

  it('reads comm from core-<pid>.img', () => {
    expect(parseCoreComm(core('nc'))).toBe('nc');
  });

  it('takes an image without the common magic', () => {
    expect(parsePstree(image(0x50273030, [pstreeEntry(3, 0, [3])], false), 10)).toHaveLength(1);
  });

  const hostile: { name: string; img: Buffer; error: RegExp }[] = [
    { name: 'another image type', img: core('x'), error: /magic/ },
    { name: 'shorter than its magic', img: Buffer.from([1, 2]), error: /shorter/ },
    {
      name: 'an entry length past the end',
      img: Buffer.concat([u32(0x54564319), u32(0x50273030), u32(1e9)]),
      error: /past the end/,
    },
    {
      name: 'a cut length',
      img: Buffer.concat([u32(0x54564319), u32(0x50273030), Buffer.from([1, 0])]),
      error: /cut short/,
    },
    { name: 'a varint that never ends', img: pstree(Buffer.alloc(20, 0xff)), error: /varint/ },
    { name: 'a field past its message', img: pstree(Buffer.from([0x2a, 0x7f, 1])), error: /past the end/ },
    { name: 'a required field missing', img: pstree(vField(2, 1)), error: /pid missing/ },
    { name: 'a wire type protobuf does not have', img: pstree(Buffer.from([0x0f])), error: /wire type/ },
  ];
  it.each(hostile)('refuses $name with a reason', ({ img, error }) => {
    expect(() => parsePstree(img, 10)).toThrow(error);
  });

  it('stops at the entry cap', () => {
    const img = pstree(...Array.from({ length: 5 }, (_, i) => pstreeEntry(i + 1, 0, [])));
    expect(() => parsePstree(img, 4)).toThrow(/more than 4 entries/);
    expect(imageEntries(img, 0x50273030, 5)).toHaveLength(5);
  });

  it('keeps unknown fields out of the way', () => {
    const f = protoFields(
      Buffer.concat([vField(1, 5), Buffer.from([0x11, 1, 2, 3, 4, 5, 6, 7, 8]), vField(1, 6)]),
    );
    expect(f.get(1)).toEqual([5n, 6n]);
  });
});

// ---- the archive summary ---------------------------------------------------------------

async function tarOf(
  entries: { name: string; body: Buffer | string; type?: 'file' | 'symlink'; linkname?: string }[],
): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    if (e.type === 'symlink') p.entry({ name: e.name, type: 'symlink', linkname: e.linkname ?? '' });
    else p.entry({ name: e.name, type: 'file' }, e.body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function summarize(archive: Buffer, limits?: Partial<SummaryLimits>, chunk = 7_000) {
  const s = new CheckpointSummarizer({
    maxEntries: 100,
    maxJsonBytes: 1024,
    maxImageBytes: 1024,
    maxProcesses: 10,
    maxHeldBytes: 64 * 1024,
    ...limits,
  });
  for (let off = 0; off < archive.length; off += chunk) await s.write(archive.subarray(off, off + chunk));
  return s.finish(false);
}

describe('CheckpointSummarizer', () => {
  const config = { id: 'abc', name: 'app', rootfsImageName: 'busybox:latest' };
  const spec = { process: { args: ['sh', '-c', 'nc 10.0.0.1 80'] } };

  it("summarises a containerd archive in checkpointctl's terms", async () => {
    const archive = await tarOf([
      { name: 'config.dump', body: JSON.stringify(config) },
      { name: 'spec.dump', body: JSON.stringify(spec) },
      { name: 'checkpoint/pstree.img', body: pstree(pstreeEntry(1, 0, [1]), pstreeEntry(9, 1, [9])) },
      { name: 'checkpoint/core-1.img', body: core('sh') },
      { name: 'checkpoint/core-9.img', body: core('nc') },
      { name: 'checkpoint/pages-1.img', body: Buffer.alloc(4096) },
      { name: 'rootfs-diff.tar', body: Buffer.alloc(2048) },
    ]);
    const s = await summarize(archive);
    expect(s.config).toEqual(config);
    expect(s.spec).toEqual(spec);
    expect(s.processes).toEqual([
      { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1], comm: 'sh' },
      { pid: 9, ppid: 1, pgid: 9, sid: 1, threads: [9], comm: 'nc' },
    ]);
    expect(s.entriesTotal).toBe(7);
    expect(s.entries.find((e) => e.name === 'checkpoint/pages-1.img')).toEqual({
      name: 'checkpoint/pages-1.img',
      size: 4096,
      type: 'file',
    });
    expect(s.sizes['rootfs-diff.tar']).toBe(2048);
    expect(s.problems).toEqual([]);
  });

  it('a hostile archive: entries past the cap counted, oversized files not parsed, bad JSON and duplicates recorded', async () => {
    const archive = await tarOf([
      { name: 'config.dump', body: '{not json' },
      { name: 'spec.dump', body: JSON.stringify({ big: 'x'.repeat(2000) }) },
      { name: 'checkpoint/pstree.img', body: pstree(pstreeEntry(1, 0, [1])) },
      { name: 'checkpoint/pstree.img', body: pstree(pstreeEntry(66, 0, [66])) },
      { name: '../../etc/passwd', body: 'root:x:0:0' },
      { name: 'link', body: '', type: 'symlink', linkname: '/etc/shadow' },
      ...Array.from({ length: 120 }, (_, i) => ({ name: `checkpoint/x-${i}`, body: '' })),
    ]);
    const s = await summarize(archive);
    expect(s.entriesTotal).toBe(126);
    expect(s.entries).toHaveLength(100);
    // Names are reported as they are, never used as paths.
    expect(s.entries.map((e) => e.name)).toContain('../../etc/passwd');
    expect(s.config).toBeUndefined();
    expect(s.spec).toBeUndefined();
    expect(s.processes.map((p) => p.pid)).toEqual([1]);
    expect(s.problems.join('\n')).toMatch(/config\.dump: .*JSON/);
    expect(s.problems.join('\n')).toMatch(/spec\.dump: \d+ bytes, larger than the 1024 read/);
    expect(s.problems.join('\n')).toMatch(/pstree\.img: appears twice/);
    expect(s.problems.join('\n')).toMatch(/no checkpoint\/core-1\.img/);
  });

  // Each core image under its own cap, but many of them: one budget for all held bytes.
  it('holds at most maxHeldBytes for parsing, whatever the number of images', async () => {
    const tree = pstree(pstreeEntry(1, 0, [1]), pstreeEntry(2, 1, [2]));
    const archive = await tarOf([
      { name: 'checkpoint/pstree.img', body: tree },
      { name: 'checkpoint/core-1.img', body: core('sh') },
      { name: 'checkpoint/core-2.img', body: core('nc') },
    ]);
    const budget = tree.length + core('sh').length;
    const s = await summarize(archive, { maxHeldBytes: budget });
    expect(s.problems.join('\n')).toMatch(
      new RegExp(`core-2\\.img: over the ${budget} bytes the summary holds at once`),
    );
    expect(s.processes.find((p) => p.pid === 1)?.comm).toBe('sh');
    expect(s.processes.find((p) => p.pid === 2)?.comm).toBeUndefined();
    // With room for all of them, both are read.
    const roomy = await summarize(archive, { maxHeldBytes: budget + core('nc').length });
    expect(roomy.processes.map((p) => p.comm)).toEqual(['sh', 'nc']);
  });

  it('not a tar at all: a recorded problem, and the bytes still flow', async () => {
    const s = await summarize(Buffer.from('checkpoint bytes'.repeat(100)));
    expect(s.problems.join('\n')).toMatch(/not a readable tar archive|no checkpoint\/pstree\.img/);
    expect(s.processes).toEqual([]);
  });

  it('a cut archive says so', async () => {
    const archive = await tarOf([{ name: 'config.dump', body: JSON.stringify(config) }]);
    const s = new CheckpointSummarizer();
    await s.write(archive.subarray(0, 700));
    const out = await s.finish(true);
    expect(out.problems.join('\n')).toMatch(/cut at its cap/);
  });
});
