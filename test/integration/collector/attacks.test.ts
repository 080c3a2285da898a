/**
 * The suspect is still active while the collector reads its container (DESIGN, "Threat model"):
 * each container here runs an attacker program (test/testenv/runc.ts) that swaps, grows and
 * plants things during the collection. A hang is caught by the hook's and the tests' timeouts;
 * every assertion is on what the store holds afterwards.
 */
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectContainer, type CollectOptions, type CollectResult } from '../../../src/collector/collect.js';
import { parseMountinfo, type MountInfo } from '../../../src/collector/procfs.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { staticProgram } from '../../testenv/rootfs.js';
import { hostileBinary, startContainer, swapperBinary, type TestContainer } from '../../testenv/runc.js';

const MiB = 1024 * 1024;

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface TarEntry {
  name: string;
  type: string;
  size: number;
  body: Buffer;
  devmajor?: number;
  devminor?: number;
}

async function tarEntries(buf: Buffer): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const ex = extract();
  Readable.from([buf]).pipe(ex);
  for await (const entry of ex) {
    const body = await readAll(entry as unknown as Readable);
    out.push({
      name: entry.header.name.replace(/\/$/, ''),
      type: entry.header.type ?? 'file',
      size: entry.header.size ?? 0,
      body,
      devmajor: entry.header.devmajor,
      devminor: entry.header.devminor,
    });
  }
  return out;
}

function newStore(): { store: LocalEvidenceStore; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'amber-evidence-'));
  return { store: new LocalEvidenceStore({ root: dir, registry: createRegistry() }), dir };
}

function collect(
  c: TestContainer,
  store: LocalEvidenceStore,
  caseId: string,
  extra: Partial<CollectOptions>,
): Promise<CollectResult> {
  return collectContainer(
    {
      caseId,
      containerId: c.id,
      runtime: 'runc',
      runtimeRoot: c.stateRoot,
      snapshotterRoots: c.layerRoots,
      hostReferencePid: process.pid,
      terminationMessagePath: null,
      ...extra,
    },
    store,
    { registry: createRegistry() },
  );
}

describe('an attacker swapping files and directories with symlinks to the host while the collector walks', () => {
  const names = 20;
  const runs = 10;
  const marker = `HOST-MARKER-${randomBytes(8).toString('hex')}`;
  let hostDir: string;
  let c: TestContainer;
  let store: LocalEvidenceStore;
  let storeDir: string;
  const results: CollectResult[] = [];

  beforeAll(async () => {
    // What the symlinks point at: a host directory whose file holds the marker.
    hostDir = mkdtempSync(join(tmpdir(), 'amber-host-secret-'));
    writeFileSync(join(hostDir, 'secret'), `${marker}\n`);
    ({ store, dir: storeDir } = newStore());
    c = await startContainer({
      command: ['/usr/bin/swapper', hostDir, String(names)],
      executables: { '/usr/bin/swapper': swapperBinary() },
    });
    await c.waitForFile('/ready');
    for (let i = 0; i < runs; i++)
      results.push(
        await collect(c, store, `case-swap-${i}`, {
          groups: ['targetedFiles', 'writableLayer', 'filesystemDiff'],
        }),
      );
  }, 240_000);

  afterAll(async () => {
    await c?.stop();
    if (hostDir) rmSync(hostDir, { recursive: true, force: true });
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it('never archives a host byte, over more than 1,000 raced reads, and never loses a tar', async () => {
    const prefix = `containers/${c.id.slice(0, 12)}`;
    let raced = 0;
    let containerBytes = 0;
    let changedGaps = 0;
    let vanishedGaps = 0;
    for (const [i, r] of results.entries()) {
      const caseId = `case-swap-${i}`;
      const stored = r.report.collected.map((a) => a.artifact);
      expect(stored).toEqual(
        expect.arrayContaining([
          `${prefix}/filesystem/targeted.tar`,
          `${prefix}/filesystem/writable-layer.tar`,
        ]),
      );
      expect(r.reportArtifact?.name).toBe(`${prefix}/report.json`);
      for (const a of await store.list(caseId)) {
        const body = await readAll(await store.get(caseId, a.name));
        expect(body.includes(Buffer.from(marker)), `${caseId} ${a.name}`).toBe(false);
        if (!a.name.endsWith('.tar')) continue;
        for (const e of await tarEntries(body)) {
          if (!/(^|\/)tmp\/race\//.test(e.name)) continue;
          raced++;
          if (e.type === 'file' && e.body.toString().startsWith('container')) containerBytes++;
        }
      }
      for (const f of r.report.failed) {
        if (!/tmp\/(race|vanish)\//.test(f.what)) continue;
        raced += f.what.includes('/race/') ? 1 : 0;
        if (/changed while being read/.test(f.reason)) changedGaps++;
        if (/ENOENT/.test(f.reason)) vanishedGaps++;
      }
      // Every gap is an explained one: a swap, a vanished entry, the kernel refusing a symlink
      // open, or getfattr's walk for opaque directories meeting a vanished path (then the set of
      // opaque directories is said to be incomplete, not taken as whole).
      for (const f of r.report.failed)
        expect(f.reason).toMatch(
          /changed while being read|ENOENT|ELOOP|ENOTDIR|symlink|getfattr could not read \d+ path\(s\).*(No such file|Not a directory|Too many levels)/,
        );
    }
    console.log(
      `swap race: ${runs} runs, ${raced} raced entries read, ${containerBytes} container files archived, ` +
        `${changedGaps} swaps caught by fstat, ${vanishedGaps} vanished entries recorded, 0 host bytes`,
    );
    expect(raced).toBeGreaterThanOrEqual(1000);
    // The walk did read the container's own files: a collector archiving nothing would also pass the marker check.
    expect(containerBytes).toBeGreaterThan(0);
  });
});

describe('a container planting FIFOs, devices, a socket, sparse and growing files, deep and wide trees', () => {
  const cap = MiB;
  let c: TestContainer;
  let store: LocalEvidenceStore;
  let storeDir: string;
  let result: CollectResult;
  let prefix: string;
  const artifact = async (name: string): Promise<Buffer> =>
    readAll(await store.get('case-hostile', `${prefix}/${name}`));

  beforeAll(async () => {
    ({ store, dir: storeDir } = newStore());
    c = await startContainer({
      command: ['/usr/bin/hostile', '5000'],
      executables: { '/usr/bin/hostile': hostileBinary() },
      allCapabilities: true,
    });
    prefix = `containers/${c.id.slice(0, 12)}`;
    await c.waitForFile('/ready');
    result = await collect(c, store, 'case-hostile', {
      groups: ['processes', 'targetedFiles', 'writableLayer', 'filesystemDiff'],
      caps: { maxFileBytes: cap },
      deadlineSeconds: 100,
    });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it('finishes and stores its report', () => {
    expect(result.ok).toBe(true);
    expect(result.reportArtifact?.name).toBe(`${prefix}/report.json`);
    expect(result.report.deadlines).toEqual([]);
  });

  it('records the deleted FIFOs (held read-only and read-write) and device the suspect holds, and reads none', async () => {
    const { processes } = JSON.parse((await artifact('processes.json')).toString()) as {
      processes: {
        exe?: { path: string };
        fds?: { target: string; artifact?: string; special?: { type: string; rdev: number } }[];
      }[];
    };
    const fds = processes.find((p) => p.exe?.path === '/usr/bin/hostile')?.fds ?? [];
    const fd = (target: string) => fds.find((f) => f.target === target);
    expect(fd('/tmp/fifo-del-ro (deleted)')).toMatchObject({ special: { type: 'fifo' } });
    expect(fd('/tmp/fifo-del-rw (deleted)')).toMatchObject({ special: { type: 'fifo' } });
    expect(fd('/tmp/dev-del (deleted)')).toMatchObject({
      special: { type: 'character-device', rdev: (1 << 8) | 5 },
    });
    for (const t of ['/tmp/fifo-del-ro (deleted)', '/tmp/fifo-del-rw (deleted)', '/tmp/dev-del (deleted)'])
      expect(fd(t)?.artifact).toBeUndefined();
  });

  it('archives present FIFOs and device nodes as headers only, and records the socket', async () => {
    const entries = await tarEntries(await artifact('filesystem/targeted.tar'));
    const get = (n: string) => entries.find((e) => e.name === n);
    expect(get('tmp/fifo-ro')).toMatchObject({ type: 'fifo', size: 0 });
    expect(get('tmp/fifo-rw')).toMatchObject({ type: 'fifo', size: 0 });
    expect(get('tmp/dev-zero')).toMatchObject({
      type: 'character-device',
      devmajor: 1,
      devminor: 5,
      size: 0,
    });
    expect(result.report.skipped.find((s) => s.what.endsWith('targeted.tar: tmp/sock'))?.reason).toMatch(
      /socket.*not read/,
    );
  });

  it('never stores more than the per-file cap, of a 64 GiB sparse file or of files that grow while read', async () => {
    const { processes } = JSON.parse((await artifact('processes.json')).toString()) as {
      processes: { exe?: { path: string }; fds?: { target: string; artifact?: string }[] }[];
    };
    const fds = processes.find((p) => p.exe?.path === '/usr/bin/hostile')?.fds ?? [];
    const sparse = fds.find((f) => f.target === '/tmp/sparse-del (deleted)');
    const grow = fds.find((f) => f.target === '/tmp/grow-del (deleted)');
    const stored = new Map(result.report.collected.map((a) => [a.artifact, a.size]));
    expect(stored.get(sparse?.artifact ?? 'missing')).toBe(cap);
    expect(stored.get(grow?.artifact ?? 'missing')).toBeLessThanOrEqual(cap);
    expect(result.report.skipped.find((s) => s.what.includes('/tmp/sparse-del'))?.reason).toMatch(
      /truncated: the first 1048576 bytes/,
    );
    // Every copied file, everywhere: none past the cap.
    for (const a of result.report.collected)
      if (a.artifact.includes('/fd-')) expect(a.size, a.artifact).toBeLessThanOrEqual(cap);
    for (const tar of ['filesystem/targeted.tar', 'filesystem/writable-layer.tar']) {
      for (const e of await tarEntries(await artifact(tar))) {
        expect(e.size, `${tar} ${e.name}`).toBeLessThanOrEqual(cap);
        expect(e.body.length).toBe(e.size);
      }
    }
    expect(result.report.skipped.find((s) => s.what.endsWith('targeted.tar: tmp/sparse'))?.reason).toMatch(
      /68719476736 bytes exceeds the per-file cap of 1048576; not read/,
    );
  });

  it('walks a wide tree whole and a deep one down to the depth cap, recording the rest', async () => {
    const entries = await tarEntries(await artifact('filesystem/targeted.tar'));
    expect(entries.filter((e) => e.name.startsWith('tmp/wide/')).length).toBe(5000);
    const deepest = Math.max(
      ...entries.filter((e) => e.name.startsWith('tmp/deep')).map((e) => e.name.split('/').length),
    );
    expect(deepest).toBeGreaterThan(200);
    expect(result.report.failed.find((f) => f.what.includes('targeted.tar: tmp/deep/'))?.reason).toMatch(
      /more than 256 directory levels deep/,
    );
  });
});

/**
 * One sparse 1 GiB memfd behind 300 descriptors, and 12 more: every copy is capped per file, and
 * without a total cap and one copy per file the suspect would have the collector store 300 GiB
 * under Object Lock and run out the clock (the attacker review's attack).
 */
function memfdFloodBinary(): string {
  return staticProgram(
    'memfd-flood',
    `#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void) {
  int big = memfd_create("big", 0);
  if (big < 0 || ftruncate(big, 1L << 30) < 0 || write(big, "FLOOD", 5) != 5) return 1;
  for (int i = 0; i < 300; i++) if (dup(big) < 0) return 2;
  for (int i = 0; i < 12; i++) {
    int other = memfd_create("other", 0);
    if (other < 0 || ftruncate(other, 1L << 30) < 0) return 3;
  }
  close(open("/ready", O_CREAT | O_WRONLY, 0644));
  for (;;) pause();
}
`,
  );
}

describe('a suspect flooding the collector with descriptors of sparse memfds', () => {
  let c: TestContainer;
  let store: LocalEvidenceStore;
  let storeDir: string;
  let result: CollectResult;
  let prefix: string;

  beforeAll(async () => {
    ({ store, dir: storeDir } = newStore());
    c = await startContainer({
      command: ['/usr/bin/memfd-flood'],
      executables: { '/usr/bin/memfd-flood': memfdFloodBinary() },
    });
    prefix = `containers/${c.id.slice(0, 12)}`;
    await c.waitForFile('/ready');
    result = await collect(c, store, 'case-flood', {
      groups: ['processes'],
      caps: { maxFileBytes: MiB, maxProcessFilesBytes: 4 * MiB },
      deadlineSeconds: 100,
    });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it('copies one memfd once however many descriptors hold it, and all process files under one cap', async () => {
    expect(result.ok).toBe(true);
    const { processes } = JSON.parse(
      (await readAll(await store.get('case-flood', `${prefix}/processes.json`))).toString(),
    ) as { processes: { exe?: { path: string }; fds?: { target: string; artifact?: string }[] }[] };
    const fds = processes.find((p) => p.exe?.path === '/usr/bin/memfd-flood')?.fds ?? [];
    const big = fds.filter((f) => f.target === '/memfd:big (deleted)');
    expect(big.length).toBe(301);
    expect(new Set(big.map((f) => f.artifact))).toEqual(new Set([big[0]!.artifact]));
    expect(big[0]!.artifact).toMatch(/fd-\d+\.bin$/);
    const copies = result.report.collected.filter((a) => a.artifact.startsWith(`${prefix}/processes/`));
    const bytes = copies.reduce((n, a) => n + a.size, 0);
    console.log(`memfd flood: ${copies.length} process files stored, ${bytes} bytes (cap ${4 * MiB})`);
    expect(bytes).toBeLessThanOrEqual(4 * MiB);
    expect(result.report.skipped.some((s) => /total cap of 4194304 bytes is reached/.test(s.reason))).toBe(
      true,
    );
  });
});

describe('a collection that runs out of time', () => {
  let c: TestContainer;
  let store: LocalEvidenceStore;
  let storeDir: string;
  let result: CollectResult;
  const wide = 100_000;

  beforeAll(async () => {
    ({ store, dir: storeDir } = newStore());
    c = await startContainer({
      command: ['/usr/bin/hostile', String(wide)],
      executables: { '/usr/bin/hostile': hostileBinary() },
      allCapabilities: true,
    });
    await c.waitForFile('/ready', 120_000);
    // 5 s for the steps (1 s of the 6 is kept for the report): far less than walking 100,000 files.
    result = await collect(c, store, 'case-deadline', {
      groups: ['processes', 'targetedFiles'],
      caps: { maxFileBytes: MiB },
      deadlineSeconds: 6,
    });
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it('stops at its deadline, stores what it had, and says in report.json what is missing', async () => {
    const prefix = `containers/${c.id.slice(0, 12)}`;
    const report = JSON.parse(
      (await readAll(await store.get('case-deadline', `${prefix}/report.json`))).toString(),
    ) as CollectResult['report'];
    expect(report.complete).toBe(false);
    expect(JSON.parse(result.summary)).toMatchObject({ ok: true, complete: false });
    expect(report.cutShort).toMatch(/deadline of 6 s was reached before mounts/);
    expect(report.skipped).toContainEqual({
      what: 'mounts',
      reason: "not collected: the run's deadline was reached",
    });
    // The step running at the deadline is named, and what it had read is kept, not lost.
    expect(report.deadlines).toContainEqual({
      what: 'filesystem/targeted.tar',
      limitMs: expect.any(Number) as number,
      abandoned: false,
    });
    const tar = await tarEntries(
      await readAll(await store.get('case-deadline', `${prefix}/filesystem/targeted.tar`)),
    );
    expect(tar.length).toBeGreaterThan(0);
    expect(tar.filter((e) => e.name.startsWith('tmp/wide/')).length).toBeLessThan(wide);
    expect(report.failed.some((f) => /deadline reached after \d+ entries/.test(f.reason))).toBe(true);
  });
});

/** Every byte the store holds for a case, file by file. */
function storedFiles(dir: string): { path: string; body: Buffer }[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const path = join(e.parentPath, e.name);
      return { path, body: readFileSync(path) };
    });
}

describe('a suspect that mounts an overlay on its own root naming a host directory as upperdir', () => {
  const marker = randomBytes(8).toString('hex');
  let canary: string;
  let c: TestContainer;
  let store: LocalEvidenceStore;
  let storeDir: string;
  let lie: MountInfo | undefined;
  let result: CollectResult;
  let refused: CollectResult;
  let viaCgroup: CollectResult;

  beforeAll(async () => {
    // Stands in for another container's snapshot on the node: what the lie points the collector at.
    canary = mkdtempSync(join(tmpdir(), 'amber-canary-'));
    for (const d of ['upper', 'lower']) {
      mkdirSync(join(canary, d));
      writeFileSync(join(canary, d, `canary-${marker}`), `CANARY-${marker}\n`);
    }
    ({ store, dir: storeDir } = newStore());
    // PID 1 changes its real writable layer, then becomes, by exec, a process in a user and mount
    // namespace of its own with an overlay on / whose layers are tmpfs directories at the canary's
    // host paths: its /proc/1/mountinfo now names the canary as upperdir and lowerdir. fd 3 is
    // opened on the real root first, so the test learns through it that the mount is done.
    const script = [
      'exec 3>/attack.log',
      `echo real-${marker} > /suspect-wrote.txt`,
      `mkdir -p ${canary}`,
      `exec unshare -Urm sh -c '${[
        `mount -t tmpfs decoy ${canary}`,
        `mkdir ${canary}/upper ${canary}/lower ${canary}/work`,
        `mount -t overlay overlay -o lowerdir=${canary}/lower,upperdir=${canary}/upper,workdir=${canary}/work /`,
        'echo mounted >&3',
        'exec sleep 600',
      ].join(' && ')} || echo "attack failed: $?" >&3'`,
    ].join('\n');
    // Mapping root in a new user namespace takes CAP_SETFCAP (kernel 5.12+), which containerd's
    // and Docker's default capability sets include and runc's minimal spec does not.
    c = await startContainer({ command: ['/bin/sh', '-c', script], addCapabilities: ['CAP_SETFCAP'] });
    await waitForContent(join(c.rootfs, 'attack.log'), /mounted|failed/).catch((err: Error) => {
      throw new Error(`${err.message}; output: ${readFileSync(c.stdoutFile, 'utf8')}`);
    });
    expect(readFileSync(join(c.rootfs, 'attack.log'), 'utf8')).toBe('mounted\n');
    lie = parseMountinfo(readFileSync(`/proc/${c.pid}/mountinfo`, 'utf8'))
      .filter((m) => m.mountPoint === '/')
      .at(-1);
    result = await collect(c, store, 'case-overlay-lie', {
      groups: ['processes', 'filesystemDiff', 'writableLayer'],
    });
    // Found by its cgroup (no runtime state names the rootfs): the overlay is the host mount
    // with the device of /proc/<pid>/root, which the mount on top of / has not changed.
    viaCgroup = await collect(c, store, 'case-overlay-cgroup', {
      runtime: 'auto',
      runtimeRoot: undefined,
      groups: ['processes', 'writableLayer'],
    });
    // The same container with roots that leave its own directory out: a refusal, not a read.
    refused = await collect(c, store, 'case-overlay-refused', {
      groups: ['processes', 'filesystemDiff', 'writableLayer'],
      snapshotterRoots: [join(canary, 'elsewhere')],
    });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
    if (canary) rmSync(canary, { recursive: true, force: true });
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it("has made the container's own mountinfo lie (the attack took effect)", () => {
    expect(lie?.fsType).toBe('overlay');
    expect(lie?.superOptions.upperdir).toBe(`${canary}/upper`);
    expect(lie?.superOptions.lowerdir).toBe(`${canary}/lower`);
  });

  it('archives the real writable layer and never a byte or a name of the canary', async () => {
    const files = storedFiles(storeDir);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) expect(f.body.includes(`CANARY-${marker}`), f.path).toBe(false);
    for (const f of files) expect(f.body.includes(`canary-${marker}`), f.path).toBe(false);
    const prefix = `containers/${c.id.slice(0, 12)}`;
    const tar = await tarEntries(
      await readAll(await store.get('case-overlay-lie', `${prefix}/filesystem/writable-layer.tar`)),
    );
    expect(tar.find((e) => e.name === 'suspect-wrote.txt')?.body.toString()).toBe(`real-${marker}\n`);
    const diff = JSON.parse(
      (await readAll(await store.get('case-overlay-lie', `${prefix}/filesystem/diff.json`))).toString(),
    ) as {
      layout: { upperDir: string; mountPoint: string };
      containerClaims?: { upperDir: string };
      changes: { path: string; kind: string }[];
    };
    expect(diff.layout).toMatchObject({ upperDir: c.upperDir, mountPoint: c.rootfs });
    expect(diff.changes).toContainEqual(expect.objectContaining({ path: '/suspect-wrote.txt', kind: 'A' }));
  });

  it("finds the same layer by the root's device when the container is found by its cgroup", async () => {
    expect(viaCgroup.container?.via).toBe('cgroup scan');
    expect(viaCgroup.report.failed).toEqual([]);
    const tar = await tarEntries(
      await readAll(
        await store.get(
          'case-overlay-cgroup',
          `containers/${c.id.slice(0, 12)}/filesystem/writable-layer.tar`,
        ),
      ),
    );
    expect(tar.find((e) => e.name === 'suspect-wrote.txt')?.body.toString()).toBe(`real-${marker}\n`);
  });

  it("records the container's claim as a finding, beside a complete collection", () => {
    expect(result.ok).toBe(true);
    expect(result.report.failed).toEqual([]);
    expect(result.report.skipped).toContainEqual({
      what: "the container's own mountinfo",
      reason: expect.stringContaining(`names upperdir ${canary}/upper`) as unknown,
    });
  });

  it('refuses a layout outside the snapshotter roots as a recorded gap, and collects the rest', () => {
    expect(refused.ok).toBe(true);
    expect(refused.report.failed).toContainEqual({
      what: 'overlay layout',
      reason: expect.stringMatching(/upperdir ".*\/upper" is outside the snapshotter roots/) as unknown,
    });
    const names = refused.report.collected.map((a) => a.artifact.split('/').slice(2).join('/'));
    expect(names).toContain('processes.json');
    expect(names).not.toContain('filesystem/writable-layer.tar');
    expect(names).not.toContain('filesystem/diff.json');
    expect(refused.reportArtifact).toBeDefined();
  });
});

async function waitForContent(path: string, want: RegExp, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!want.test(existsSync(path) ? readFileSync(path, 'utf8') : '')) {
    if (Date.now() > deadline) throw new Error(`${path} did not match ${want} in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
