import { DeleteObjectCommand, GetObjectLockConfigurationCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMinio, type Minio } from '../../testenv/minio.js';

let minio: Minio;
beforeAll(async () => {
  minio = await startMinio();
});
afterAll(async () => {
  await minio?.stop();
});

describe('MinIO test environment', () => {
  it('creates its bucket with Object Lock enabled', async () => {
    const res = await minio.client().send(new GetObjectLockConfigurationCommand({ Bucket: minio.bucket }));
    expect(res.ObjectLockConfiguration?.ObjectLockEnabled).toBe('Enabled');
  });

  it('refuses to delete an object version under COMPLIANCE retention', async () => {
    const s3 = minio.client();
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: minio.bucket,
        Key: 'smoke/locked.txt',
        Body: 'evidence',
        ChecksumAlgorithm: 'SHA256',
        ObjectLockMode: 'COMPLIANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 24 * 3600 * 1000),
      }),
    );
    expect(put.VersionId).toBeTruthy();
    await expect(
      s3.send(
        new DeleteObjectCommand({ Bucket: minio.bucket, Key: 'smoke/locked.txt', VersionId: put.VersionId }),
      ),
      // AWS answers AccessDenied; MinIO answers InvalidRequest "Object is WORM protected".
    ).rejects.toThrow(/WORM protected|Access Denied/);
  });
});
