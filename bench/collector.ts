/**
 * Collector throughput: export a container's 1 GiB writable layer as a tar, SHA-256 it and store
 * it, against `tar -c | sha256sum` of the same directory. Target (docs/DESIGN): at least 80% of
 * the baseline's throughput, with memory that does not grow with the data.
 *
 *   npx tsx bench/collector.ts [sizeMiB]
 *
 * Each measured run is a fresh child process, so its peak RSS (getrusage maxrss) is its own.
 * Two stores: the local directory store (writes and fsyncs a second copy, as a real upload
 * writes somewhere) and a digest-only sink (the export + SHA-256 alone, what the baseline does).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { collectContainer, type CollectOptions } from '../src/collector/collect.js';
import { LocalEvidenceStore } from '../src/evidence/local-store.js';
import { toReadable } from '../src/evidence/hashing.js';
import type { EvidenceStore, StoredArtifact, Inventory } from '../src/evidence/store.js';
import { createRegistry } from '../src/observability/metrics.js';
import { hostileBinary, startContainer, swapperBinary } from '../test/testenv/runc.js';

const MiB = 1024 * 1024;

/** Hashes and counts what it is given and keeps nothing: the cost of the export alone. */
class DigestOnlyStore implements EvidenceStore {
  caseLocation(caseId: string): string {
    return `null:///${caseId}/`;
  }
  async put(_caseId: string, name: string, body: Readable | Buffer | string): Promise<StoredArtifact> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of toReadable(body)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { name, uri: `null:///${name}`, size, sha256: hash.digest('hex') };
  }
  async get(): Promise<Readable> {
    throw new Error('digest-only store keeps nothing');
  }
  async list(): Promise<StoredArtifact[]> {
    return [];
  }
  async inventory(): Promise<Inventory> {
    return { artifacts: [], problems: [] };
  }
}

async function child(): Promise<void> {
  const [, , , store, containerId, stateRoot, storeDir] = process.argv;
  const registry = createRegistry();
  const evidence =
    store === 'local' ? new LocalEvidenceStore({ root: storeDir ?? '', registry }) : new DigestOnlyStore();
  const start = process.hrtime.bigint();
  const r = await collectContainer(
    {
      caseId: 'bench',
      containerId: containerId ?? '',
      runtime: 'runc',
      runtimeRoot: stateRoot,
      groups: ['writableLayer'],
      terminationMessagePath: null,
    },
    evidence,
    { registry },
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const tar = r.report.collected.find((a) => a.artifact.endsWith('writable-layer.tar'));
  if (!r.ok || !tar) throw new Error(`collection failed: ${JSON.stringify(r.report.failed)}`);
  process.stdout.write(
    JSON.stringify({ seconds, bytes: tar.size, maxRssMiB: process.resourceUsage().maxRSS / 1024 }),
  );
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 1024);
  const c = await startContainer({ command: ['/bin/sh', '-c', 'touch /ready; exec sleep 3600'] });
  const storeDir = mkdtempSync(join(tmpdir(), 'amber-bench-store-'));
  try {
    await c.waitForFile('/ready');
    // The layer: 3/4 in 16 MiB files (binaries, archives), 1/4 in 4 KiB..64 KiB files (sources, configs).
    const big = join(c.rootfs, 'data/big');
    const small = join(c.rootfs, 'data/small');
    mkdirSync(big, { recursive: true });
    mkdirSync(small, { recursive: true });
    const block = randomBytes(16 * MiB);
    for (let i = 0; i < (sizeMiB * 3) / 4 / 16; i++) {
      block.writeUInt32LE(i, 0); // distinct files
      writeFileSync(join(big, `f${i}.bin`), block);
    }
    let smallBytes = 0;
    for (let i = 0; smallBytes < (sizeMiB * MiB) / 4; i++) {
      const n = 4096 * (1 + (i % 16));
      writeFileSync(join(small, `s${i}.txt`), block.subarray(i % 1024, (i % 1024) + n));
      smallBytes += n;
    }
    execFileSync('sync');
    const du = execFileSync('du', ['-sb', c.upperDir], { encoding: 'utf8' }).split('\t')[0];
    // Warm the page cache so neither side pays the first read from disk.
    execFileSync('sh', ['-c', `tar -C '${c.upperDir}' -cf - . > /dev/null`]);

    const baseline = (): number => {
      const t0 = process.hrtime.bigint();
      const base = spawnSync('sh', ['-c', `tar -C '${c.upperDir}' -cf - . | sha256sum`], {
        encoding: 'utf8',
      });
      if (base.status !== 0) throw new Error(`baseline failed: ${base.stderr}`);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };

    const run = (store: string) => {
      const r = spawnSync(
        process.execPath,
        [...process.execArgv, import.meta.filename, '--child', store, c.id, c.stateRoot, storeDir],
        { encoding: 'utf8', maxBuffer: 1 << 20 },
      );
      if (r.status !== 0) throw new Error(`collector run failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as { seconds: number; bytes: number; maxRssMiB: number };
    };
    // Baseline before and after (the machine is shared): the ratio uses the faster of the two.
    const base1 = baseline();
    const sink = run('digest');
    const local = run('local');
    const baseSeconds = Math.min(base1, baseline());

    const mibps = (bytes: number, s: number) => (bytes / MiB / s).toFixed(0);
    const layerBytes = Number(du);
    console.log(
      `writable layer: ${(layerBytes / MiB).toFixed(0)} MiB on disk, tar ${(sink.bytes / MiB).toFixed(0)} MiB`,
    );
    console.log(
      `baseline  tar -c | sha256sum           ${baseSeconds.toFixed(2)} s (runs: ${base1.toFixed(2)} s before)  ${mibps(sink.bytes, baseSeconds)} MiB/s`,
    );
    console.log(
      `collector export+sha256 (digest sink)  ${sink.seconds.toFixed(2)} s  ${mibps(sink.bytes, sink.seconds)} MiB/s  peak RSS ${sink.maxRssMiB.toFixed(0)} MiB  ratio ${(baseSeconds / sink.seconds).toFixed(2)}`,
    );
    console.log(
      `collector export+sha256+local store    ${local.seconds.toFixed(2)} s  ${mibps(local.bytes, local.seconds)} MiB/s  peak RSS ${local.maxRssMiB.toFixed(0)} MiB  ratio ${(baseSeconds / local.seconds).toFixed(2)}`,
    );
  } finally {
    await c.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

/**
 * `npx tsx bench/collector.ts freeze [files]`: the numbers behind ADR 0008's freeze decision.
 * How long freezing and thawing a container's cgroup (v1 freezer) takes with a busy attacker in
 * it, what a frozen walk changes against a live swapper, and how long walking a tree of
 * `files` files takes: the time a frozen container would not answer its liveness probe.
 */
async function freezeBench(): Promise<void> {
  const files = Number(process.argv[3] ?? 100_000);
  const hostDir = mkdtempSync(join(tmpdir(), 'amber-bench-host-'));
  writeFileSync(join(hostDir, 'secret'), 'HOST\n');
  const storeDir = mkdtempSync(join(tmpdir(), 'amber-bench-store-'));
  const store = new LocalEvidenceStore({ root: storeDir, registry: createRegistry() });
  const swapper = await startContainer({
    command: ['/usr/bin/swapper', hostDir, '20'],
    executables: { '/usr/bin/swapper': swapperBinary() },
  });
  const wide = await startContainer({
    command: ['/usr/bin/hostile', String(files)],
    executables: { '/usr/bin/hostile': hostileBinary() },
    allCapabilities: true,
  });
  let n = 0;
  const collectOnce = async (c: typeof swapper, groups: CollectOptions['groups']) => {
    const t0 = process.hrtime.bigint();
    const r = await collectContainer(
      {
        caseId: `freeze-${n++}`,
        containerId: c.id,
        runtime: 'runc',
        runtimeRoot: c.stateRoot,
        hostReferencePid: process.pid,
        terminationMessagePath: null,
        caps: { maxFileBytes: MiB },
        groups,
      },
      store,
      { registry: createRegistry() },
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const swaps = r.report.failed.filter((f) =>
      /changed while being read|ENOENT|EINVAL/.test(f.reason),
    ).length;
    return { seconds, swaps };
  };
  try {
    await swapper.waitForFile('/ready');
    await wide.waitForFile('/ready', 300_000);
    const freezer = (pid: number): string => {
      const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => /^\d+:freezer:/.test(l));
      if (!line) throw new Error('no cgroup v1 freezer for the container');
      return join('/sys/fs/cgroup/freezer', line.split(':')[2] ?? '');
    };
    const setState = (dir: string, state: 'FROZEN' | 'THAWED'): number => {
      const t0 = process.hrtime.bigint();
      writeFileSync(join(dir, 'freezer.state'), state);
      while (readFileSync(join(dir, 'freezer.state'), 'utf8').trim() !== state) {
        /* the kernel moves FREEZING -> FROZEN as each task stops */
      }
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const dir = freezer(swapper.pid);
    const groups: CollectOptions['groups'] = ['targetedFiles', 'writableLayer'];
    const live: { seconds: number; swaps: number }[] = [];
    const frozen: { seconds: number; swaps: number }[] = [];
    const freezeMs: number[] = [];
    const thawMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      live.push(await collectOnce(swapper, groups));
      freezeMs.push(setState(dir, 'FROZEN'));
      frozen.push(await collectOnce(swapper, groups));
      thawMs.push(setState(dir, 'THAWED'));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    console.log(
      `freezer: freeze ${med(freezeMs).toFixed(2)} ms, thaw ${med(thawMs).toFixed(2)} ms (median of 5, busy swapper)`,
    );
    console.log(
      `swapper walk live:   ${med(live.map((r) => r.seconds)).toFixed(3)} s, swap gaps per run ${live.map((r) => r.swaps).join(',')}`,
    );
    console.log(
      `swapper walk frozen: ${med(frozen.map((r) => r.seconds)).toFixed(3)} s, swap gaps per run ${frozen.map((r) => r.swaps).join(',')}`,
    );
    const big = await collectOnce(wide, ['targetedFiles', 'writableLayer', 'filesystemDiff']);
    console.log(
      `walk of a tree of ${files} files (targeted + writable layer + diff): ${big.seconds.toFixed(2)} s ` +
        '= time a frozen container would miss its liveness probe',
    );
  } finally {
    await swapper.stop();
    await wide.stop();
    rmSync(hostDir, { recursive: true, force: true });
    rmSync(storeDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child();
else if (process.argv[2] === 'freeze') await freezeBench();
else await main();
