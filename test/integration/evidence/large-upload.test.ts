import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { sealCase } from '../../../src/evidence/manifest.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { generatedBody, keyPair, peakRssGrowth, sha256OfGenerated } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const keys = keyPair();

let minio: Minio;
beforeAll(async () => {
  minio = await startMinio();
});
afterAll(async () => {
  await minio?.stop();
});

const connection = () => ({
  endpoint: minio.endpoint,
  region: minio.region,
  forcePathStyle: true,
  credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
});

describe('large artifacts', () => {
  it('streams 1 GiB with flat memory, and the case verifies', { timeout: 900_000 }, async () => {
    const store = new S3EvidenceStore({
      client: createS3Client(connection()),
      bucket: minio.bucket,
      prefix: 'cases',
      retention: { mode: 'COMPLIANCE', period: '1d', legalHold: false },
      registry: createRegistry(),
    });
    const { result: stored, peakGrowth } = await peakRssGrowth(() =>
      store.put('big', 'memory.img', generatedBody(GiB), { collectedBy: 'collector/memory' }),
    );
    console.log(`1 GiB upload: peak RSS growth ${(peakGrowth / MiB).toFixed(1)} MiB`);
    // Parts of 8 MiB, two in flight: tens of MiB, whatever the size of the body.
    expect(peakGrowth).toBeLessThan(200 * MiB);
    expect(stored.size).toBe(GiB);
    expect(stored.sha256).toBe(await sha256OfGenerated(GiB));

    await sealCase(
      store,
      'big',
      { artifacts: [stored], caseInfo: { id: 'big' }, timeline: [] },
      loadSigningKey(keys.privatePem),
    );
    let lastProgress = 0;
    const { result: report, peakGrowth: verifyGrowth } = await peakRssGrowth(() =>
      verifyCase(`s3://${minio.bucket}/cases/big`, {
        publicKeyPem: keys.publicPem,
        s3: connection(),
        onProgress: (p) => (lastProgress = p.bytes),
      }),
    );
    console.log(`1 GiB verify: peak RSS growth ${(verifyGrowth / MiB).toFixed(1)} MiB`);
    expect(report.ok).toBe(true);
    expect(lastProgress).toBe(GiB);
    expect(verifyGrowth).toBeLessThan(200 * MiB);
  });
});
