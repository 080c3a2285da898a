/**
 * Evidence upload throughput: streaming SHA-256 + multipart upload to a real MinIO (Object Lock,
 * COMPLIANCE retention, store-side SHA-256 per part) versus `sha256sum` of the same file, as a
 * ratio; plus the local directory store, and peak RSS growth and CPU time during each upload.
 *
 * MinIO runs on the same cores, and SHA-256 is computed three times per byte on S3: our
 * whole-object digest, the SDK's per-part checksum, and MinIO checking that checksum. The
 * client CPU time shows Amber's own share.
 *
 *   npx tsx bench/evidence-upload.ts              # 1 GiB
 *   AMBER_BENCH_MIB=256 npx tsx bench/evidence-upload.ts
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

  const shaStart = process.hrtime.bigint();
  const sum = execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];
  const shaSeconds = Number(process.hrtime.bigint() - shaStart) / 1e9;

  const s3 = new S3EvidenceStore({
    client: createS3Client({
      endpoint: minio.endpoint,
      region: minio.region,
      forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    }),
    bucket: minio.bucket,
    prefix: 'bench',
    retention: { mode: 'COMPLIANCE', period: '1d', legalHold: false },
    registry: createRegistry(),
  });
  const up = await timed(() => s3.put('bench', 'artifact.bin', createReadStream(file)));
  if (up.result.sha256 !== sum)
    throw new Error(`digest differs: store ${up.result.sha256}, sha256sum ${sum}`);

  const local = new LocalEvidenceStore({ root: join(dir, 'local'), registry: createRegistry() });
  const loc = await timed(() => local.put('bench', 'artifact.bin', createReadStream(file)));
  if (loc.result.sha256 !== sum)
    throw new Error(`digest differs: local ${loc.result.sha256}, sha256sum ${sum}`);

  const mbps = (seconds: number) => (size / MiB / seconds).toFixed(1);
  console.log(
    `evidence upload benchmark, ${sizeMiB} MiB generated file, ${process.platform} ${process.arch}`,
  );
  console.log(`  sha256sum                    ${shaSeconds.toFixed(2)} s  ${mbps(shaSeconds)} MiB/s`);
  console.log(
    `  S3 (MinIO) put + SHA-256     ${up.seconds.toFixed(2)} s  ${mbps(up.seconds)} MiB/s  ` +
      `ratio ${(shaSeconds / up.seconds).toFixed(2)} of sha256sum  peak RSS growth ${(up.peakGrowth / MiB).toFixed(1)} MiB  ` +
      `client CPU ${up.cpuSeconds.toFixed(2)} s`,
  );
  console.log(
    `  local dir put + SHA-256      ${loc.seconds.toFixed(2)} s  ${mbps(loc.seconds)} MiB/s  ` +
      `ratio ${(shaSeconds / loc.seconds).toFixed(2)} of sha256sum  peak RSS growth ${(loc.peakGrowth / MiB).toFixed(1)} MiB  ` +
      `CPU ${loc.cpuSeconds.toFixed(2)} s`,
  );
  console.log(`  process RSS at end           ${(process.memoryUsage.rss() / MiB).toFixed(1)} MiB`);
} finally {
  await minio.stop();
  rmSync(dir, { recursive: true, force: true });
}
