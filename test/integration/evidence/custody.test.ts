import { createHash, createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  paginateListObjectsV2,
  type S3Client,
} from '@aws-sdk/client-s3';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVerify } from '../../../src/cmd/verify.js';
import {
  JobCredentialsMinter,
  type JobCredentials,
  type JobScope,
} from '../../../src/collection/credentials.js';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { MANIFEST_NAME, sealCase } from '../../../src/evidence/manifest.js';
import type { Retention } from '../../../src/evidence/retention.js';
import { S3EvidenceStore, createS3Client } from '../../../src/evidence/s3-store.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { keyPair } from './helpers.js';

/**
 * Custody against a real MinIO with Object Lock (ADR 0009): what a collection Job's credentials
 * can and cannot do, taken as root on the suspect's node would take them; and what `amber
 * verify` says of a case that was moved, unlocked or downloaded.
 */
const keys = keyPair('ed25519');
const ROLE = 'arn:aws:iam::000000000000:role/amber-collector';
let minio: Minio;
let root: S3Client;
let dir: string;
const minter = new JobCredentialsMinter();

beforeAll(async () => {
  minio = await startMinio();
  root = minio.client();
  dir = mkdtempSync(join(tmpdir(), 'amber-custody-'));
});
afterAll(async () => {
  minter.close();
  await minio?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const rootConnection = () => ({
  endpoint: minio.endpoint,
  region: minio.region,
  forcePathStyle: true,
  credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
});

async function mint(scope: JobScope): Promise<JobCredentials> {
  return minter.mint(
    {
      endpoint: minio.endpoint,
      region: minio.region,
      roleArn: ROLE,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    },
    scope,
    'amber-collect-test',
    900,
  );
}

/** The status code of a refused request; fails the test if the request went through. */
async function refusal(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  }
  throw new Error('the request was allowed');
}

describe("a collection Job's credentials", () => {
  const own = 'containers/0123456789ab';
  const scope: JobScope = {
    bucket: 'evidence',
    prefix: 'amber/',
    caseId: 'case-job',
    containerPrefix: own,
    legalHold: false,
    lockMode: 'GOVERNANCE',
    retentionDays: 1,
  };
  let job: S3Client;
  let creds: JobCredentials;
  let written: { key: string; versionId?: string };

  beforeAll(async () => {
    creds = await mint({ ...scope, bucket: minio.bucket });
    job = createS3Client({ ...rootConnection(), credentials: creds });
    // What the collector does with them: the evidence store, write-only.
    const store = new S3EvidenceStore({
      client: job,
      bucket: minio.bucket,
      prefix: 'amber/',
      retention: { mode: 'GOVERNANCE', period: '1d', legalHold: false },
      registry: createRegistry(),
    });
    const a = await store.put('case-job', `${own}/processes.json`, '[{"pid":1}]', {
      collectedBy: 'collector/processes',
    });
    written = { key: `amber/case-job/${own}/processes.json`, ...(a.versionId && { versionId: a.versionId }) };
  });

  it('are short-lived session credentials', () => {
    expect(creds.sessionToken.length).toBeGreaterThan(0);
    expect(creds.accessKeyId).not.toBe(minio.accessKey);
    expect(creds.expiration!.getTime() - Date.now()).toBeLessThanOrEqual(900_000);
  });

  it("cannot live shorter than STS's 900 s: MinIO refuses 899 (why the seal waits at least that long)", async () => {
    await expect(
      minter.mint(
        {
          endpoint: minio.endpoint,
          region: minio.region,
          roleArn: ROLE,
          credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
        },
        { ...scope, bucket: minio.bucket },
        'too-short',
        899,
      ),
    ).rejects.toThrow();
  });

  it('write evidence under their own prefix, locked, with its digest record', async () => {
    const head = await root.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: written.key }));
    expect(head.ObjectLockMode).toBe('GOVERNANCE');
    await root.send(
      new HeadObjectCommand({
        Bucket: minio.bucket,
        Key: `amber/case-job/.amber/digests/${own}/processes.json.json`,
      }),
    );
  });

  it('cannot overwrite what they wrote: the store refuses an existing name', async () => {
    const store = new S3EvidenceStore({
      client: job,
      bucket: minio.bucket,
      prefix: 'amber/',
      retention: { mode: 'GOVERNANCE', period: '1d', legalHold: false },
      registry: createRegistry(),
    });
    await expect(store.put('case-job', `${own}/processes.json`, 'forged')).rejects.toThrow(/already exists/);
  });

  const put = (Key: string) =>
    job.send(new PutObjectCommand({ Bucket: minio.bucket, Key, Body: 'planted by root on the node' }));
  it.each<[string, () => Promise<unknown>]>([
    [
      'read their own artifact',
      () => job.send(new GetObjectCommand({ Bucket: minio.bucket, Key: written.key })),
    ],
    [
      'HEAD their own artifact',
      () => job.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: written.key })),
    ],
    [
      'read the manifest',
      () => job.send(new GetObjectCommand({ Bucket: minio.bucket, Key: `amber/case-job/${MANIFEST_NAME}` })),
    ],
    ['list the bucket', () => job.send(new ListObjectsV2Command({ Bucket: minio.bucket }))],
    [
      'list the case',
      () => job.send(new ListObjectsV2Command({ Bucket: minio.bucket, Prefix: 'amber/case-job/' })),
    ],
    [
      'list their own prefix',
      () => job.send(new ListObjectsV2Command({ Bucket: minio.bucket, Prefix: `amber/case-job/${own}/` })),
    ],
    [
      'list versions',
      () => job.send(new ListObjectVersionsCommand({ Bucket: minio.bucket, Prefix: 'amber/' })),
    ],
    ['write the manifest', () => put(`amber/case-job/${MANIFEST_NAME}`)],
    ["write the manifest's digest record", () => put(`amber/case-job/.amber/digests/${MANIFEST_NAME}.json`)],
    ['write under another container', () => put('amber/case-job/containers/ffffffffffff/processes.json')],
    ['write under a sibling prefix', () => put(`amber/case-job/${own}x/processes.json`)],
    ["write the operator's view", () => put('amber/case-job/orchestrator/pod.yaml')],
    ['write at the case root', () => put('amber/case-job/notes.txt')],
    ['write under another case', () => put(`amber/case-other/${own}/processes.json`)],
    ['write outside the prefix', () => put(`elsewhere/case-job/${own}/processes.json`)],
    [
      'delete their own artifact',
      () =>
        job.send(
          new DeleteObjectCommand({ Bucket: minio.bucket, Key: written.key, VersionId: written.versionId }),
        ),
    ],
    [
      'lift a legal hold (not granted without one)',
      () =>
        job.send(
          new PutObjectLegalHoldCommand({
            Bucket: minio.bucket,
            Key: written.key,
            VersionId: written.versionId,
            LegalHold: { Status: 'OFF' },
          }),
        ),
    ],
  ])('are refused: %s', async (_what, attempt) => {
    expect(await refusal(attempt())).toBe(403);
  });

  it.each<[string, 'COMPLIANCE' | 'GOVERNANCE', number]>([
    ['another lock mode than the case', 'COMPLIANCE', 86_400_000],
    ['a century of retention (storage no one could free)', 'GOVERNANCE', 36_500 * 86_400_000],
    ['a shorter retention than the case', 'GOVERNANCE', 3_600_000],
  ])('are refused a write with %s', async (_what, mode, ms) => {
    const status = await refusal(
      job.send(
        new PutObjectCommand({
          Bucket: minio.bucket,
          Key: `amber/case-job/${own}/lock-${mode}-${ms}.bin`,
          Body: 'x',
          ObjectLockMode: mode,
          ObjectLockRetainUntilDate: new Date(Date.now() + ms),
        }),
      ),
    );
    expect(status).toBe(403);
  });

  it('COMPLIANCE: cannot shorten retention, bypass header or not', async () => {
    const compliance = await mint({ ...scope, bucket: minio.bucket, lockMode: 'COMPLIANCE' });
    const cjob = createS3Client({ ...rootConnection(), credentials: compliance });
    const key = `amber/case-job/${own}/compliance.bin`;
    const put = await cjob.send(
      new PutObjectCommand({
        Bucket: minio.bucket,
        Key: key,
        Body: 'x',
        ObjectLockMode: 'COMPLIANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
      }),
    );
    const status = await refusal(
      cjob.send(
        new PutObjectRetentionCommand({
          Bucket: minio.bucket,
          Key: key,
          VersionId: put.VersionId,
          BypassGovernanceRetention: true,
          Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(Date.now() + 60_000) },
        }),
      ),
    );
    expect(status).toBeGreaterThanOrEqual(400);
  });

  it('GOVERNANCE on MinIO: the bypass header no longer shortens retention, the retain-until window refuses it', async () => {
    // MinIO treats a session derived from the root user as the owner for the bypass check and
    // ignores the session policy there, even an explicit Deny (ADR 0009). But PutObjectRetention
    // itself is still authorised against the policy's retain-until window, which an hour from
    // now is outside of: refused, and the lock stays as written.
    const before = await root.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: written.key }));
    const status = await refusal(
      job.send(
        new PutObjectRetentionCommand({
          Bucket: minio.bucket,
          Key: written.key,
          VersionId: written.versionId,
          BypassGovernanceRetention: true,
          Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 3_600_000) },
        }),
      ),
    );
    expect(status).toBe(403);
    const head = await root.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: written.key }));
    expect(head.ObjectLockRetainUntilDate).toEqual(before.ObjectLockRetainUntilDate);
  });

  it('cannot mint further credentials', async () => {
    const sts = new STSClient({
      endpoint: minio.endpoint,
      region: minio.region,
      credentials: creds,
      maxAttempts: 1,
    });
    try {
      expect(
        await refusal(sts.send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'escalate' }))),
      ).toBe(403);
    } finally {
      sts.destroy();
    }
  });
});

/**
 * MinIO's admin API, as `mc quota set <alias>/<bucket> --size N` calls it: a hard bucket quota,
 * the only cap on bytes there is (a session policy has no condition on size).
 */
async function setBucketQuota(bucket: string, bytes: number): Promise<void> {
  const url = new URL(`${minio.endpoint}/minio/admin/v3/set-bucket-quota?bucket=${bucket}`);
  const body = JSON.stringify({ quota: bytes, quotatype: 'hard' });
  const signer = new SignatureV4({
    service: 's3',
    region: minio.region,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    sha256: NodeSha256,
  });
  const signed = await signer.sign({
    method: 'PUT',
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: url.pathname,
    query: { bucket },
    headers: { host: url.host, 'content-type': 'application/json' },
    body,
  });
  const res = await fetch(url, { method: 'PUT', headers: signed.headers, body });
  if (!res.ok) throw new Error(`set-bucket-quota: ${res.status} ${await res.text()}`);
}

function bytes(d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof d === 'string') return d;
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return new Uint8Array(d);
}

/** The hash constructor SignatureV4 asks for, on node:crypto. */
class NodeSha256 {
  private readonly h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
}

describe("the bytes a Job's credentials can write", () => {
  it('a bucket quota on MinIO refuses an object larger than what is left; the session policy cannot', async () => {
    const bucket = 'evidence-quota';
    await minio.createBucket(bucket, { objectLock: true });
    await setBucketQuota(bucket, 1024 * 1024);
    const own = 'containers/0123456789ab';
    const creds = await mint({
      bucket,
      prefix: 'amber/',
      caseId: 'case-quota',
      containerPrefix: own,
      legalHold: false,
      lockMode: 'GOVERNANCE',
      retentionDays: 1,
    });
    const job = createS3Client({ ...rootConnection(), credentials: creds, maxAttempts: 1 });
    try {
      const put = (name: string, bytes: number) =>
        job.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `amber/case-quota/${own}/${name}`,
            Body: Buffer.alloc(bytes),
            ObjectLockMode: 'GOVERNANCE',
            ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
          }),
        );
      await put('small.bin', 1024);
      const refused = await put('large.bin', 2 * 1024 * 1024).then(
        () => undefined,
        (err: unknown) => err as { name?: string; $metadata?: { httpStatusCode?: number } },
      );
      expect(refused?.name).toBe('XMinioAdminBucketQuotaExceeded');
    } finally {
      job.destroy();
    }
  });
});

/** Seals a case of two artifacts under `prefix` and returns its s3:// location. */
async function sealedCase(caseId: string, retention: Retention, prefix = 'cases'): Promise<string> {
  const store = new S3EvidenceStore({
    client: createS3Client(rootConnection()),
    bucket: minio.bucket,
    prefix,
    retention,
    registry: createRegistry(),
  });
  const artifacts = [
    await store.put(caseId, 'containers/0123456789ab/processes.json', '[{"pid":1,"comm":"sh"}]'),
    await store.put(caseId, 'orchestrator/pod.yaml', 'kind: Pod\n'),
  ];
  const sealed = await sealCase(
    store,
    caseId,
    {
      artifacts,
      caseInfo: { id: caseId, uid: `uid-${caseId}` },
      timeline: [],
      store: { kind: 's3', bucket: minio.bucket, prefix },
      retention: { mode: retention.mode, period: retention.period, legalHold: retention.legalHold },
      completeness: { complete: true, gaps: [], unreadable: [] },
      findings: [],
    },
    loadSigningKey(keys.privatePem),
  );
  expect(sealed.existed).toBe(false);
  return `s3://${minio.bucket}/${prefix}/${caseId}`;
}

async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const page of paginateListObjectsV2({ client: root }, { Bucket: minio.bucket, Prefix: prefix }))
    for (const o of page.Contents ?? []) out.push(o.Key!);
  return out;
}

async function cli(location: string, json = false) {
  const keyFile = join(dir, 'pub.pem');
  writeFileSync(keyFile, keys.publicPem);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await runVerify(
    location,
    { publicKey: keyFile, endpoint: minio.endpoint, region: minio.region, pathStyle: true, json },
    { stdout, stderr },
  );
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

describe('amber verify binds a sealed case to its place', () => {
  const governance: Retention = { mode: 'GOVERNANCE', period: '1d', legalHold: true };
  let location: string;
  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = minio.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = minio.secretKey;
    location = await sealedCase('case-bound', governance);
  });

  it('verifies the case where it was sealed, lock mode, retain-until and legal hold included', async () => {
    const r = await cli(location);
    expect(r.stdout).toMatch(/retention: checked/);
    expect(r.code).toBe(0);
  });

  it('fails a sealed case copied, locks and all, under another prefix', async () => {
    for (const key of await keysUnder('cases/case-bound/')) {
      await root.send(
        new CopyObjectCommand({
          Bucket: minio.bucket,
          Key: key.replace(/^cases\//, 'relocated/'),
          CopySource: `${minio.bucket}/${key}`,
          ObjectLockMode: 'GOVERNANCE',
          ObjectLockRetainUntilDate: new Date(Date.now() + 2 * 86_400_000),
          ObjectLockLegalHoldStatus: 'ON',
        }),
      );
    }
    const r = await cli(`s3://${minio.bucket}/relocated/case-bound`);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /sealed at s3:\/\/evidence\/cases\/case-bound\/, not s3:\/\/evidence\/relocated\/case-bound\//,
    );
  });

  it('fails a sealed case copied under another case name', async () => {
    for (const key of await keysUnder('cases/case-bound/'))
      await root.send(
        new CopyObjectCommand({
          Bucket: minio.bucket,
          Key: key.replace(/^cases\/case-bound\//, 'cases/case-renamed/'),
          CopySource: `${minio.bucket}/${key}`,
          ObjectLockMode: 'GOVERNANCE',
          ObjectLockRetainUntilDate: new Date(Date.now() + 2 * 86_400_000),
        }),
      );
    const r = await cli(`s3://${minio.bucket}/cases/case-renamed`);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/seals case "case-bound", not "case-renamed"/);
  });

  it('fails once a legal hold is lifted and retention shortened with the GOVERNANCE bypass', async () => {
    const caseLocation = await sealedCase('case-unlocked', governance);
    const key = 'cases/case-unlocked/containers/0123456789ab/processes.json';
    const head = await root.send(new HeadObjectCommand({ Bucket: minio.bucket, Key: key }));
    await root.send(
      new PutObjectLegalHoldCommand({
        Bucket: minio.bucket,
        Key: key,
        VersionId: head.VersionId,
        LegalHold: { Status: 'OFF' },
      }),
    );
    await root.send(
      new PutObjectRetentionCommand({
        Bucket: minio.bucket,
        Key: key,
        VersionId: head.VersionId,
        BypassGovernanceRetention: true,
        Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 3_600_000) },
      }),
    );
    const report = await verifyCase(caseLocation, { publicKeyPem: keys.publicPem, s3: rootConnection() });
    expect(report.ok).toBe(false);
    const a = report.artifacts.find((x) => x.name === 'containers/0123456789ab/processes.json');
    expect(a?.status).toBe('unprotected');
    expect(a?.problems).toEqual(
      expect.arrayContaining([
        'the legal hold it was sealed with was removed',
        expect.stringMatching(/^retention was shortened: the store says .*, sealed as /),
      ]),
    );
    // The other artifact kept its hold and its date: only the unlocked one is named.
    expect(report.artifacts.find((x) => x.name === 'orchestrator/pod.yaml')?.status).toBe('ok');
  });

  it('checks a downloaded copy offline: exit 0, retention not checkable offline', async () => {
    const copy = join(dir, 'download', 'case-bound');
    for (const key of await keysUnder('cases/case-bound/')) {
      const res = await root.send(new GetObjectCommand({ Bucket: minio.bucket, Key: key }));
      const path = join(copy, key.slice('cases/case-bound/'.length));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, await res.Body!.transformToByteArray());
    }
    const r = await cli(copy);
    expect(r.stdout).toMatch(/retention: not checkable offline/);
    expect(r.stdout).toMatch(/VERIFIED/);
    expect(r.code).toBe(0);
    // ... and a changed byte in the copy still fails it.
    writeFileSync(join(copy, 'orchestrator/pod.yaml'), 'kind: Secret\n');
    const changed = await cli(copy);
    expect(changed.code).toBe(1);
    expect(changed.stdout).toMatch(/orchestrator\/pod\.yaml: SHA-256 is/);
  });

  it('a path that does not exist is a usage error: exit 2', async () => {
    const r = await cli(join(dir, 'no-such-dir', 'case-bound'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not exist/);
  });
});
