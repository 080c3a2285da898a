/**
 * Evidence upload throughput: streaming SHA-256 + multipart upload to a real MinIO (Object Lock,
 * COMPLIANCE retention, a store-checked transfer checksum per part) versus `sha256sum` of the
 * same file, as a ratio taken within each pair of runs; both transfer checksums (CRC-32, the
 * default, and SHA-256, which hashes every byte three times: our digest, the SDK's per part,
 * MinIO's check) and the local directory store, over rounds in a rotating order; peak RSS growth
 * and client CPU time of each upload. MinIO runs on the same cores.
 *
 *   npx tsx bench/evidence-upload.ts              # 1 GiB, 3 rounds
 *   AMBER_BENCH_MIB=256 AMBER_BENCH_ROUNDS=5 npx tsx bench/evidence-upload.ts
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { LocalEvidenceStore } from '../src/evidence/local-store.js';
import { S3EvidenceStore, createS3Client } from '../src/evidence/s3-store.js';
import { createRegistry } from '../src/observability/metrics.js';
import { generatedBody, peakRssGrowth } from '../test/integration/evidence/helpers.js';
import { startMinio } from '../test/testenv/minio.js';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.AMBER_BENCH_MIB ?? 1024);
const size = sizeMiB * MiB;

/** Wall time, this process's CPU time (user + system) and peak RSS growth of `fn`. */
async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; seconds: number; cpuSeconds: number; peakGrowth: number }> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const { result, peakGrowth } = await peakRssGrowth(fn);
  const used = process.cpuUsage(cpu);
  return {
    result,
    seconds: Number(process.hrtime.bigint() - start) / 1e9,
    cpuSeconds: (used.user + used.system) / 1e6,
    peakGrowth,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'amber-bench-evidence-'));
const file = join(dir, 'artifact.bin');
const minio = await startMinio();
try {
  await pipeline(generatedBody(size), createWriteStream(file));
  // Warm the page cache so both sides read from memory, not from the disk.
  execFileSync('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'] });

  const rounds = Number(process.env.AMBER_BENCH_ROUNDS ?? 3);
  const sha256sum = () => {
    const started = process.hrtime.bigint();
    const sum = execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
    return { sum, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  };
  const s3 = (transferChecksum: 'CRC32' | 'SHA256') =>
    new S3EvidenceStore({
      client: createS3Client({
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      }),
      bucket: minio.bucket,
      prefix: 'bench',
      retention: { mode: 'COMPLIANCE', period: '1d', legalHold: false },
      transferChecksum,
      registry: createRegistry(),
    });
  const local = new LocalEvidenceStore({ root: join(dir, 'local'), registry: createRegistry() });

  type Run = Awaited<ReturnType<typeof timed<{ sha256: string }>>>;
  const runs: Record<'crc' | 'sha' | 'local', Run[]> = { crc: [], sha: [], local: [] };
  const ratios: Record<'crc' | 'sha' | 'local', number[]> = { crc: [], sha: [], local: [] };
  const mbps = (seconds: number) => (size / MiB / seconds).toFixed(1);
  console.log(
    `evidence upload benchmark, ${sizeMiB} MiB generated file, ${rounds} rounds, ${process.platform} ${process.arch}`,
  );
  for (let round = 0; round < rounds; round++) {
    // Each upload is paired with a sha256sum run just before it: the ratio is taken within the pair.
    const steps: Array<['crc' | 'sha' | 'local', () => Promise<{ sha256: string }>]> = [
      ['crc', () => s3('CRC32').put('bench', `crc-${round}.bin`, createReadStream(file))],
      ['sha', () => s3('SHA256').put('bench', `sha-${round}.bin`, createReadStream(file))],
      ['local', () => local.put('bench', `local-${round}.bin`, createReadStream(file))],
    ];
    for (let i = 0; i < steps.length; i++) {
      const [what, put] = steps[(i + round) % steps.length]!;
      const base = sha256sum();
      const run = await timed(put);
      if (run.result.sha256 !== base.sum)
        throw new Error(`digest differs: ${what} ${run.result.sha256}, sha256sum ${base.sum}`);
      runs[what].push(run);
      ratios[what].push(base.seconds / run.seconds);
      console.log(
        `  round ${round + 1} ${what.padEnd(5)} sha256sum ${base.seconds.toFixed(2)} s (${mbps(base.seconds)} MiB/s)  ` +
          `put ${run.seconds.toFixed(2)} s (${mbps(run.seconds)} MiB/s)  ratio ${(base.seconds / run.seconds).toFixed(2)}  ` +
          `client CPU ${run.cpuSeconds.toFixed(2)} s  peak RSS growth ${(run.peakGrowth / MiB).toFixed(1)} MiB`,
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const label = {
    crc: 'S3 (MinIO) put, SHA-256 + CRC-32 transfer checksum (default)',
    sha: 'S3 (MinIO) put, SHA-256 + SHA-256 transfer checksum',
    local: 'local directory put + SHA-256',
  };
  console.log('medians (ratio = sha256sum time / put time, within each pair; goal >= 0.8 for S3)');
  for (const what of ['crc', 'sha', 'local'] as const) {
    const r = ratios[what];
    console.log(
      `  ${label[what].padEnd(62)} ratio ${median(r).toFixed(2)} [${Math.min(...r).toFixed(2)}..${Math.max(...r).toFixed(2)}]  ` +
        `client CPU ${median(runs[what].map((x) => x.cpuSeconds)).toFixed(2)} s  ` +
        `peak RSS growth ${(median(runs[what].map((x) => x.peakGrowth)) / MiB).toFixed(1)} MiB`,
    );
  }
  console.log(`  process RSS at end           ${(process.memoryUsage.rss() / MiB).toFixed(1)} MiB`);
} finally {
  await minio.stop();
  rmSync(dir, { recursive: true, force: true });
}
