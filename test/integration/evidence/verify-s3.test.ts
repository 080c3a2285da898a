import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVerify } from '../../../src/cmd/verify.js';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { MANIFEST_NAME, sealCase } from '../../../src/evidence/manifest.js';
import type { Retention } from '../../../src/evidence/retention.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { verifyCase, type VerifyReport } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { generatedBody, keyPair } from './helpers.js';

const keys = keyPair('p256');
let minio: Minio;
let raw: S3Client;
let dir: string;

beforeAll(async () => {
  minio = await startMinio();
  raw = minio.client();
  dir = mkdtempSync(join(tmpdir(), 'amber-verify-s3-'));
});
afterAll(async () => {
  await minio?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const connection = () => ({
  endpoint: minio.endpoint,
  region: minio.region,
  forcePathStyle: true,
  credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
});

/** Seals a case of three artifacts (one multipart) and returns its location. */
async function sealedCase(
  caseId: string,
  retention: Retention = { mode: 'COMPLIANCE', period: '1d', legalHold: false },
) {
  const store = new S3EvidenceStore({
    client: createS3Client(connection()),
    bucket: minio.bucket,
    prefix: 'cases',
    retention,
    registry: createRegistry(),
  });
  await store.checkBucket();
  const artifacts = [
    await store.put(caseId, 'processes.json', '[{"pid":1,"comm":"sh"}]', {
      collectedBy: 'collector/processes',
    }),
    await store.put(caseId, 'logs/app.log', 'GET / 200\n', { collectedBy: 'operator/logs' }),
    await store.put(caseId, 'rootfs-diff.tar', generatedBody(9 * 1024 * 1024), {
      collectedBy: 'collector/fs-diff',
    }),
  ];
  await sealCase(
    store,
    caseId,
    {
      artifacts,
      caseInfo: { id: caseId, namespace: 'shop', pod: 'web-1', node: 'node-1' },
      timeline: [{ time: new Date().toISOString(), action: 'Sealed' }],
    },
    loadSigningKey(keys.privatePem),
  );
  return `s3://${minio.bucket}/cases/${caseId}`;
}

const verify = (location: string, publicKeyPem = keys.publicPem) =>
  verifyCase(location, { publicKeyPem, s3: connection() });
const artifact = (r: VerifyReport, name: string) => r.artifacts.find((a) => a.name === name);

describe('amber verify against MinIO', () => {
  it('verifies an intact case, through the CLI too', async () => {
    const location = await sealedCase('intact');
    const report = await verify(location);
    expect(report.manifest.problems).toEqual([]);
    expect(report.artifacts.map((a) => `${a.name}:${a.status}`)).toEqual([
      'logs/app.log:ok',
      'processes.json:ok',
      'rootfs-diff.tar:ok',
    ]);
    expect(report.ok).toBe(true);

    writeFileSync(join(dir, 'pub.pem'), keys.publicPem);
    process.env.AWS_ACCESS_KEY_ID = minio.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = minio.secretKey;
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    stdout.on('data', (c: Buffer) => out.push(c));
    const code = await runVerify(
      location,
      { publicKey: join(dir, 'pub.pem'), endpoint: minio.endpoint, region: minio.region, pathStyle: true },
      { stdout, stderr },
    );
    expect(Buffer.concat(out).toString()).toContain('VERIFIED');
    expect(code).toBe(0);
  });

  it('detects a flipped byte: a new version stacked on the locked key', async () => {
    // Object Lock protects versions, not keys: anyone allowed to PutObject can shadow evidence
    // with a new version. That is the realistic tampering on S3, and verify must catch it.
    const location = await sealedCase('flipped');
    const Key = 'cases/flipped/processes.json';
    const original = Buffer.from(
      await (
        await raw.send(new GetObjectCommand({ Bucket: minio.bucket, Key }))
      ).Body!.transformToByteArray(),
    );
    original[5] = original[5]! ^ 0x01;
    await raw.send(new PutObjectCommand({ Bucket: minio.bucket, Key, Body: original }));
    const report = await verify(location);
    expect(report.ok).toBe(false);
    const a = artifact(report, 'processes.json');
    expect(a?.status).toBe('mismatch');
    expect(a?.problems.join('\n')).toMatch(/2 versions of this key/);
    // The shadowing version carries no retention of its own.
    expect(a?.problems.join('\n')).toMatch(/no Object Lock retention/);
  });

  it('detects a missing artifact (hidden by a delete marker) and an added one', async () => {
    const location = await sealedCase('missing');
    await raw.send(new DeleteObjectCommand({ Bucket: minio.bucket, Key: 'cases/missing/logs/app.log' }));
    await raw.send(
      new PutObjectCommand({ Bucket: minio.bucket, Key: 'cases/missing/planted.sh', Body: 'curl x|sh' }),
    );
    const report = await verify(location);
    expect(report.ok).toBe(false);
    expect(artifact(report, 'logs/app.log')?.status).toBe('missing');
    expect(artifact(report, 'logs/app.log')?.problems.join()).toMatch(/delete marker/);
    expect(artifact(report, 'planted.sh')?.status).toBe('unexpected');
  });

  it('detects an edited manifest', async () => {
    const location = await sealedCase('edited');
    const Key = `cases/edited/${MANIFEST_NAME}`;
    const text = await (
      await raw.send(new GetObjectCommand({ Bucket: minio.bucket, Key }))
    ).Body!.transformToString();
    const env = JSON.parse(text) as { payload: string };
    env.payload = Buffer.from(
      Buffer.from(env.payload, 'base64').toString().replace('"pod":"web-1"', '"pod":"innocent"'),
    ).toString('base64');
    await raw.send(new PutObjectCommand({ Bucket: minio.bucket, Key, Body: `${JSON.stringify(env)}\n` }));
    const report = await verify(location);
    expect(report.ok).toBe(false);
    expect(report.manifest.signatureValid).toBe(false);
    expect(report.manifest.problems.join('\n')).toMatch(/signature invalid[\s\S]*2 versions/);
  });

  it('detects a wrong key, and exits 1 from the CLI', async () => {
    const location = await sealedCase('wrong-key');
    const report = await verify(location, keyPair('ed25519').publicPem);
    expect(report.ok).toBe(false);
    expect(report.manifest.signatureValid).toBe(false);
    writeFileSync(join(dir, 'other.pem'), keyPair('p256').publicPem);
    const code = await runVerify(
      location,
      { publicKey: join(dir, 'other.pem'), endpoint: minio.endpoint, region: minio.region, pathStyle: true },
      { stdout: new PassThrough(), stderr: new PassThrough() },
    );
    expect(code).toBe(1);
  });

  it('GOVERNANCE can be bypassed by a privileged user: the deletion is still detected', async () => {
    const location = await sealedCase('governance', { mode: 'GOVERNANCE', period: '1d', legalHold: false });
    const versions = await new S3EvidenceStore({
      client: createS3Client(connection()),
      bucket: minio.bucket,
      prefix: 'cases',
      registry: createRegistry(),
    }).list('governance');
    const target = versions.find((a) => a.name === 'processes.json')!;
    await raw.send(
      new DeleteObjectCommand({
        Bucket: minio.bucket,
        Key: 'cases/governance/processes.json',
        VersionId: target.versionId,
        BypassGovernanceRetention: true,
      }),
    );
    const report = await verify(location);
    expect(report.ok).toBe(false);
    expect(artifact(report, 'processes.json')?.status).toBe('missing');
  });

  it('flags retention that has run out', async () => {
    const location = await sealedCase('short', { mode: 'GOVERNANCE', period: '2s', legalHold: false });
    await new Promise((r) => setTimeout(r, 3_000));
    const report = await verify(location);
    expect(report.ok).toBe(false);
    expect(artifact(report, 'processes.json')?.problems.join()).toMatch(/retention expired/);
    expect(artifact(report, 'processes.json')?.status).toBe('unprotected');
  });
});
