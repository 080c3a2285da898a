import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCollect } from '../../../src/cmd/collect.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';

/** `amber collect` as the Job runs it, into a real MinIO bucket with Object Lock. */
describe('collecting into S3 with Object Lock', () => {
  let minio: Minio;
  let c: TestContainer;
  let work: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    minio = await startMinio();
    c = await startContainer({ command: ['/bin/sh', '-c', 'touch /ready; exec sleep 600'] });
    await c.waitForFile('/ready');
    // 24 MiB in the writable layer: several multipart parts for the layer tar.
    writeFileSync(join(c.rootfs, 'tmp/blob'), randomBytes(24 * 1024 * 1024));
    work = mkdtempSync(join(tmpdir(), 'amber-collect-s3-'));
  });

  afterAll(async () => {
    process.env = saved;
    await c?.stop();
    await minio?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('stores every artifact with retention and a digest matching the report', async () => {
    process.env.AWS_ACCESS_KEY_ID = minio.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = minio.secretKey;
    const termLog = join(work, 'termination-log');
    const code = await runCollect(
      {
        containerId: c.id,
        runtime: 'runc',
        runtimeRoot: c.stateRoot,
        snapshotterRoot: c.layerRoots,
        case: 'case-s3',
        bucket: minio.bucket,
        prefix: 'cases',
        endpoint: minio.endpoint,
        region: minio.region,
        pathStyle: true,
        retentionMode: 'GOVERNANCE',
        retentionPeriod: '1d',
        legalHold: false,
        fullRootfs: false,
        memory: true,
        procRoot: '/proc',
        hostRoot: '/',
        hostPid: String(process.pid),
        terminationMessagePath: termLog,
      },
      silentLogger,
    );
    expect(code).toBe(0);
    const summary = JSON.parse(readFileSync(termLog, 'utf8')) as { ok: boolean; report: { uri: string } };
    expect(summary.ok).toBe(true);
    expect(summary.report.uri).toBe(
      `s3://${minio.bucket}/cases/case-s3/containers/${c.id.slice(0, 12)}/report.json`,
    );

    const store = new S3EvidenceStore({
      client: createS3Client({
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      }),
      bucket: minio.bucket,
      prefix: 'cases',
      registry: createRegistry(),
    });
    const listed = await store.list('case-s3');
    const reportBody = await store.get('case-s3', `containers/${c.id.slice(0, 12)}/report.json`);
    const chunks: Buffer[] = [];
    for await (const ch of reportBody) chunks.push(ch as Buffer);
    const report = JSON.parse(Buffer.concat(chunks).toString()) as {
      collected: { artifact: string; sha256: string; size: number }[];
    };
    const layer = report.collected.find((a) => a.artifact.endsWith('filesystem/writable-layer.tar'));
    expect(layer?.size).toBeGreaterThan(24 * 1024 * 1024);
    for (const a of report.collected) {
      const l = listed.find((x) => x.name === a.artifact);
      expect(l?.sha256).toBe(a.sha256);
      expect(l?.retentionMode).toBe('GOVERNANCE');
    }
  });
});
