import {
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex, sha256OfStream } from '../../../src/evidence/hashing.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { ArtifactExistsError } from '../../../src/evidence/store.js';
import type { Retention } from '../../../src/evidence/retention.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { generatedBody, sha256OfGenerated } from './helpers.js';

let minio: Minio;
let raw: S3Client;
beforeAll(async () => {
  minio = await startMinio();
  raw = minio.client();
});
afterAll(async () => {
  await minio?.stop();
});

function store(
  retention?: Retention,
  bucket = minio.bucket,
  transferChecksum?: 'CRC32' | 'SHA256',
): S3EvidenceStore {
  return new S3EvidenceStore({
    client: createS3Client({
      endpoint: minio.endpoint,
      region: minio.region,
      forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    }),
    bucket,
    prefix: 'amber/cases',
    retention,
    transferChecksum,
    registry: createRegistry(),
  });
}
const compliance: Retention = { mode: 'COMPLIANCE', period: '1d', legalHold: false };
const MiB = 1024 * 1024;
// AWS answers AccessDenied; MinIO answers InvalidRequest "Object is WORM protected ...".
const refusedByLock = /WORM protected|Access Denied/;

describe('S3 evidence store on MinIO', () => {
  it('accepts a bucket with Object Lock and refuses one without, saying why', async () => {
    await store(compliance).checkBucket();
    await minio.createBucket('no-lock', { objectLock: false });
    await expect(store(compliance, 'no-lock').checkBucket()).rejects.toThrow(/no-lock.*Object Lock/);
    await expect(store(compliance, 'no-such-bucket').checkBucket()).rejects.toThrow(/does not exist/);
  });

  it('writes a small artifact under COMPLIANCE retention with a store-verified CRC-32', async () => {
    const before = Date.now();
    const stored = await store(compliance).put('c1', 'processes.json', '[{"pid":1}]', {
      collectedBy: 'collector/processes',
      node: 'node-1',
    });
    expect(stored).toMatchObject({
      uri: `s3://${minio.bucket}/amber/cases/c1/processes.json`,
      size: 11,
      sha256: sha256Hex('[{"pid":1}]'),
      retentionMode: 'COMPLIANCE',
    });
    const head = await raw.send(
      new HeadObjectCommand({
        Bucket: minio.bucket,
        Key: 'amber/cases/c1/processes.json',
        ChecksumMode: 'ENABLED',
      }),
    );
    expect(head.ObjectLockMode).toBe('COMPLIANCE');
    expect(head.ObjectLockRetainUntilDate!.getTime()).toBeGreaterThan(before + 86_400_000 - 5_000);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32('[{"pid":1}]'));
    expect(head.ChecksumCRC32).toBe(crc.toString('base64'));
    expect(head.Metadata?.['amber-collected-by']).toBe(encodeURIComponent('collector/processes'));
  });

  it('with SHA-256 as the transfer checksum, the store checks that instead', async () => {
    const stored = await store(compliance, minio.bucket, 'SHA256').put('c1', 'sha-transfer.json', '{"a":1}');
    const head = await raw.send(
      new HeadObjectCommand({
        Bucket: minio.bucket,
        Key: 'amber/cases/c1/sha-transfer.json',
        ChecksumMode: 'ENABLED',
      }),
    );
    expect(head.ChecksumSHA256).toBe(Buffer.from(stored.sha256, 'hex').toString('base64'));
    expect(head.ChecksumCRC32).toBeUndefined();
  });

  it('streams a multipart artifact, records the whole-object digest beside the composite checksum', async () => {
    const size = 20 * MiB + 123;
    const stored = await store(compliance).put('c1', 'rootfs-diff.tar', generatedBody(size));
    expect(stored.size).toBe(size);
    expect(stored.sha256).toBe(await sha256OfGenerated(size));
    const head = await raw.send(
      new HeadObjectCommand({
        Bucket: minio.bucket,
        Key: 'amber/cases/c1/rootfs-diff.tar',
        ChecksumMode: 'ENABLED',
      }),
    );
    // Three 8 MiB parts, each checked by the store; the object checksum is a digest of digests,
    // and the one we computed from the bytes hashed (put() compares them).
    expect(head.ChecksumCRC32).toMatch(/-3$/);
    const record = JSON.parse(
      await (
        await raw.send(
          new GetObjectCommand({
            Bucket: minio.bucket,
            Key: 'amber/cases/c1/.amber/digests/rootfs-diff.tar.json',
          }),
        )
      ).Body!.transformToString(),
    ) as { storeChecksumCrc32?: string };
    expect(record.storeChecksumCrc32).toBe(head.ChecksumCRC32);
    expect(head.ObjectLockMode).toBe('COMPLIANCE');
    const listed = (await store().list('c1')).find((a) => a.name === 'rootfs-diff.tar');
    expect(listed).toMatchObject({
      sha256: stored.sha256,
      size,
      retentionMode: 'COMPLIANCE',
      legalHold: false,
    });
    expect((await sha256OfStream(await store().get('c1', 'rootfs-diff.tar'))).sha256).toBe(stored.sha256);
  });

  it('refuses to overwrite an existing artifact', async () => {
    const s = store(compliance);
    await s.put('c2', 'a.txt', 'first');
    await expect(s.put('c2', 'a.txt', 'second')).rejects.toBeInstanceOf(ArtifactExistsError);
    expect(await (await s.get('c2', 'a.txt')).toArray().then((c) => Buffer.concat(c).toString())).toBe(
      'first',
    );
  });

  it('lets exactly one of racing writers win, single-part and multipart (If-None-Match on MinIO)', async () => {
    const s = store(compliance);
    for (const [name, size] of [
      ['race-small', 100],
      ['race-multipart', 17 * MiB],
    ] as const) {
      const results = await Promise.allSettled([0, 1, 2].map(() => s.put('c3', name, generatedBody(size))));
      expect(
        results.filter((r) => r.status === 'fulfilled'),
        name,
      ).toHaveLength(1);
      for (const r of results)
        if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ArtifactExistsError);
    }
  });

  it('MinIO refuses to delete a locked version, and to shorten its retention', async () => {
    const s = store(compliance);
    const stored = await s.put('c4', 'locked.txt', 'evidence');
    const Key = 'amber/cases/c4/locked.txt';
    await expect(
      raw.send(new DeleteObjectCommand({ Bucket: minio.bucket, Key, VersionId: stored.versionId })),
    ).rejects.toThrow(refusedByLock);
    await expect(
      raw.send(
        new PutObjectRetentionCommand({
          Bucket: minio.bucket,
          Key,
          VersionId: stored.versionId,
          Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(Date.now() + 60_000) },
        }),
      ),
    ).rejects.toThrow(refusedByLock);
    // Even bypassing governance cannot touch COMPLIANCE.
    await expect(
      raw.send(
        new DeleteObjectCommand({
          Bucket: minio.bucket,
          Key,
          VersionId: stored.versionId,
          BypassGovernanceRetention: true,
        }),
      ),
    ).rejects.toThrow(refusedByLock);
    const retention = await raw.send(
      new GetObjectRetentionCommand({ Bucket: minio.bucket, Key, VersionId: stored.versionId }),
    );
    expect(retention.Retention?.RetainUntilDate?.toISOString()).toBe(stored.retainUntil);
  });

  it('GOVERNANCE refuses deletion without the bypass permission; legal hold is set when asked', async () => {
    const s = store({ mode: 'GOVERNANCE', period: '1d', legalHold: true });
    const stored = await s.put('c5', 'held.txt', 'evidence');
    expect(stored.legalHold).toBe(true);
    const Key = 'amber/cases/c5/held.txt';
    await expect(
      raw.send(new DeleteObjectCommand({ Bucket: minio.bucket, Key, VersionId: stored.versionId })),
    ).rejects.toThrow(refusedByLock);
    const head = await raw.send(new HeadObjectCommand({ Bucket: minio.bucket, Key }));
    expect(head.ObjectLockLegalHoldStatus).toBe('ON');
    expect((await s.list('c5'))[0]).toMatchObject({ legalHold: true, retentionMode: 'GOVERNANCE' });
  });

  it('a read-only store (no retention) refuses to write', async () => {
    await expect(store().put('c6', 'x', 'x')).rejects.toThrow(/read-only/);
  });

  it('a new version stacked on a locked key is visible in the version history', async () => {
    const s = store(compliance);
    await s.put('c7', 'a.txt', 'original');
    await raw.send(
      new PutObjectCommand({ Bucket: minio.bucket, Key: 'amber/cases/c7/a.txt', Body: 'replaced' }),
    );
    expect((await s.versionHistory('c7')).get('a.txt')).toEqual({ versions: 2, deleteMarkers: 0 });
  });
});
