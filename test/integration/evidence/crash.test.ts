import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { sealCase } from '../../../src/evidence/manifest.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { generatedBody, keyPair, sha256OfGenerated } from './helpers.js';

const MiB = 1024 * 1024;
const keys = keyPair();

let minio: Minio;
beforeAll(async () => {
  minio = await startMinio();
});
afterAll(async () => {
  await minio?.stop();
});

describe('store crash during an upload', () => {
  it(
    'MinIO killed mid-upload and restarted: the put completes and the case verifies',
    { timeout: 300_000 },
    async () => {
      const connection = {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      };
      const store = new S3EvidenceStore({
        client: createS3Client(connection),
        bucket: minio.bucket,
        prefix: 'cases',
        retention: { mode: 'COMPLIANCE', period: '1d', legalHold: false },
        registry: createRegistry(),
      });
      const size = 160 * MiB;
      let crash: Promise<void> | undefined;
      const body = generatedBody(size, (produced) => {
        // Several parts are stored already and more are in flight when the store dies.
        if (produced === 64 * MiB && !crash) {
          crash = (async () => {
            await minio.kill();
            await new Promise((r) => setTimeout(r, 1_500));
            await minio.restart();
          })();
        }
      });
      const stored = await store.put('crash', 'writable-layer.tar', body, { collectedBy: 'collector/layer' });
      await crash;
      expect(crash).toBeDefined();
      expect(stored.size).toBe(size);
      expect(stored.sha256).toBe(await sha256OfGenerated(size));

      await sealCase(
        store,
        'crash',
        { artifacts: [stored], caseInfo: { id: 'crash' }, timeline: [] },
        loadSigningKey(keys.privatePem),
      );
      const report = await verifyCase(`s3://${minio.bucket}/cases/crash`, {
        publicKeyPem: keys.publicPem,
        s3: connection,
      });
      expect(report.artifacts).toMatchObject([{ name: 'writable-layer.tar', status: 'ok', size }]);
      expect(report.ok).toBe(true);
    },
  );
});
