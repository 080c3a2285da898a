import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import {
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  ListObjectVersionsCommand,
  S3ServiceException,
  type HeadObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { Logger } from '../observability/logger.js';
import { silentLogger } from '../observability/logger.js';
import { DigestingStream, sha256OfStream, toReadable } from './hashing.js';
import { TransferChecksum } from './transfer-checksum.js';
import { recordedPut, storeMetrics, type StoreMetrics } from './metrics.js';
import {
  artifactNameSchema,
  bookkeepingDir,
  parseArtifactName,
  parseCaseId,
  parseDigestRecord,
  type DigestRecord,
} from './names.js';
import { retainUntil, type Retention } from './retention.js';
import {
  ArtifactExistsError,
  problemName,
  type ArtifactMetadata,
  type EvidenceStore,
  type Inventory,
  type StoreProblem,
  type StoredArtifact,
} from './store.js';

/** How to reach an S3 API (AWS or MinIO). Credentials default to the SDK's chain (env, IRSA, ...). */
export const s3ConnectionSchema = z.object({
  endpoint: z.url().optional(),
  region: z.string().min(1).default('us-east-1'),
  /** MinIO and most on-premises S3 need path-style addressing. */
  forcePathStyle: z.boolean().default(false),
  credentials: z
    .object({
      accessKeyId: z.string().min(1),
      secretAccessKey: z.string().min(1),
      sessionToken: z.string().optional(),
    })
    .optional(),
  /**
   * Attempts per request, with the SDK's exponential backoff (capped at 20 s). Ten attempts ride
   * out a store restart of several seconds; a part is a Buffer, so a retried part resends exactly.
   */
  maxAttempts: z.number().int().min(1).max(30).default(10),
});
export type S3Connection = z.input<typeof s3ConnectionSchema>;

export function createS3Client(connection: S3Connection): S3Client {
  const c = s3ConnectionSchema.parse(connection);
  return new S3Client({
    region: c.region,
    forcePathStyle: c.forcePathStyle,
    maxAttempts: c.maxAttempts,
    retryMode: 'standard',
    ...(c.endpoint && { endpoint: c.endpoint }),
    ...(c.credentials && { credentials: c.credentials }),
    // A store that stops answering must fail the attempt (and be retried), not hang the upload.
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
  });
}

export class ObjectLockNotEnabledError extends Error {
  constructor(
    readonly bucket: string,
    detail: string,
  ) {
    super(
      `bucket "${bucket}" cannot hold evidence: ${detail}. Object Lock must be enabled when the bucket is created ` +
        '(aws s3api create-bucket --object-lock-enabled-for-bucket, mc mb --with-lock)',
    );
    this.name = 'ObjectLockNotEnabledError';
  }
}

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix under which each case gets `<prefix>/<case>/`. */
  prefix?: string;
  /** Required to write; a store without it (amber verify) is read-only. */
  retention?: Retention;
  /** Multipart part size: memory per upload is about partSize × (queueSize + 1). */
  partSize?: number;
  queueSize?: number;
  /**
   * The checksum the store checks on every part received (ADR 0003): CRC-32 by default, which
   * we compute too and compare with the store's answer; SHA-256 hashes each byte twice more on
   * the collector's node (bench/evidence-upload.ts measures both).
   */
  transferChecksum?: 'CRC32' | 'SHA256';
  registry: Registry;
  logger?: Logger;
}

const MiB = 1024 * 1024;

/**
 * Evidence in S3 with Object Lock. Every object (artifact and digest record) is written with a
 * retention mode and retain-until date (and optionally a legal hold), with If-None-Match: * so
 * an existing key is never replaced, and with x-amz-checksum-sha256 so the store checks every
 * part it receives.
 *
 * Layout: <prefix>/<case>/<name>, and <prefix>/<case>/.amber/digests/<name>.json with the
 * whole-object SHA-256, which S3 cannot give for multipart objects (their checksum is composite)
 * and which is only known after the last byte, too late for the object's own metadata.
 */
export class S3EvidenceStore implements EvidenceStore {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly prefix: string;
  private readonly retention?: Retention;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly transferChecksum: 'CRC32' | 'SHA256';
  private readonly logger: Logger;
  private readonly metrics: StoreMetrics;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.retention = opts.retention;
    this.partSize = opts.partSize ?? 8 * MiB;
    this.queueSize = opts.queueSize ?? 2;
    this.transferChecksum = opts.transferChecksum ?? 'CRC32';
    this.logger = (opts.logger ?? silentLogger).child({
      component: 'evidence-store',
      store: 's3',
      bucket: opts.bucket,
    });
    this.metrics = storeMetrics(opts.registry);
  }

  /** Refuses a bucket without Object Lock: evidence there could be overwritten or deleted. */
  async checkBucket(): Promise<void> {
    try {
      const res = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      if (res.ObjectLockConfiguration?.ObjectLockEnabled !== 'Enabled') {
        throw new ObjectLockNotEnabledError(this.bucket, 'Object Lock is not enabled');
      }
    } catch (err) {
      if (err instanceof ObjectLockNotEnabledError) throw err;
      const name = (err as Error).name;
      // MinIO answers a missing bucket with ObjectLockConfigurationNotFoundError too: ask again.
      if (name === 'NoSuchBucket' || !(await this.bucketExists())) {
        throw new Error(`bucket "${this.bucket}" does not exist`);
      }
      if (name === 'ObjectLockConfigurationNotFoundError') {
        throw new ObjectLockNotEnabledError(this.bucket, 'it has no Object Lock configuration');
      }
      throw new Error(
        `cannot read the Object Lock configuration of bucket "${this.bucket}": ${(err as Error).message}`,
      );
    }
  }

  private async bucketExists(): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return true;
    } catch (err) {
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return false;
      throw err;
    }
  }

  caseLocation(caseId: string): string {
    return `s3://${this.bucket}/${this.caseKey(caseId)}/`;
  }

  async put(
    caseId: string,
    name: string,
    body: Readable | Buffer | string,
    meta?: ArtifactMetadata,
  ): Promise<StoredArtifact> {
    if (!this.retention)
      throw new Error('this evidence store was opened read-only (no retention configured)');
    const retention = this.retention;
    const key = this.key(caseId, name);
    const uri = `s3://${this.bucket}/${key}`;
    const source = toReadable(body);
    return recordedPut(
      { metrics: this.metrics, logger: this.logger, store: 's3', caseId, source },
      async () => {
        // If-None-Match protects against races; this HEAD just avoids streaming gigabytes to a
        // refusal. A write-only credential (a collection Job's) may not HEAD: then If-None-Match alone.
        const before = await this.headIfAllowed(key);
        if (before !== undefined && before !== 'forbidden') throw new ArtifactExistsError(uri);
        const until = retainUntil(retention.period);
        const lock = {
          ObjectLockMode: retention.mode,
          ObjectLockRetainUntilDate: until,
          ...(retention.legalHold && { ObjectLockLegalHoldStatus: 'ON' as const }),
        };
        // A token of this put, so a retried CompleteMultipartUpload that finds "our" object
        // (the first attempt committed, its answer was lost) is told apart from someone else's.
        const putId = randomUUID();
        const crc = this.transferChecksum === 'CRC32' ? new TransferChecksum(this.partSize) : undefined;
        const digester = new DigestingStream(crc);
        // Errors reach Upload through `digester`, which pipeline() destroys with the cause.
        const hashed = pipeline(source, digester, () => undefined);
        const upload = new Upload({
          client: this.client,
          partSize: this.partSize,
          queueSize: this.queueSize,
          leavePartsOnError: false,
          params: {
            Bucket: this.bucket,
            Key: key,
            Body: hashed,
            ContentType: meta?.contentType ?? 'application/octet-stream',
            ChecksumAlgorithm: this.transferChecksum,
            IfNoneMatch: '*',
            Metadata: { ...userMetadata(meta), 'amber-put-id': putId },
            ...lock,
          },
        });
        let versionId: string | undefined;
        let storeChecksum: string | undefined;
        try {
          const result = await upload.done();
          versionId = result.VersionId;
          storeChecksum = crc ? result.ChecksumCRC32 : result.ChecksumSHA256;
        } catch (err) {
          if (!isPreconditionFailed(err)) throw err;
          const existing = await this.headIfAllowed(key);
          // Not readable with this credential: whose object it is cannot be told, so not ours.
          if (existing === 'forbidden' || existing?.Metadata?.['amber-put-id'] !== putId)
            throw new ArtifactExistsError(uri);
          versionId = existing.VersionId;
          storeChecksum = crc ? existing.ChecksumCRC32 : existing.ChecksumSHA256;
        }
        const record: DigestRecord = {
          sha256: digester.sha256,
          size: digester.bytes,
          storedAt: new Date().toISOString(),
          ...(meta && { metadata: meta }),
          ...(versionId && { versionId }),
          ...(storeChecksum &&
            (crc ? { storeChecksumCrc32: storeChecksum } : { storeChecksumSha256: storeChecksum })),
        };
        if (crc) {
          // A store that answers no checksum for a put that asked for one did not check it.
          const wrong =
            storeChecksum === undefined ? 'the store returned no CRC-32' : crc.mismatch(storeChecksum);
          if (wrong) throw new Error(`${uri}: ${wrong}`);
        } else checkSinglePartChecksum(uri, record);
        await this.putDigestRecord(caseId, name, record, lock);
        return {
          name,
          uri,
          size: record.size,
          sha256: record.sha256,
          retainUntil: until.toISOString(),
          retentionMode: retention.mode,
          legalHold: retention.legalHold,
          ...(versionId && { versionId }),
          ...(meta && { metadata: meta }),
        };
      },
    );
  }

  async get(caseId: string, name: string): Promise<Readable> {
    const key = this.key(caseId, name);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return res.Body as Readable;
    } catch (err) {
      if ((err as Error).name === 'NoSuchKey')
        throw new Error(`artifact not found: s3://${this.bucket}/${key}`);
      throw err;
    }
  }

  async list(caseId: string): Promise<StoredArtifact[]> {
    return (await this.inventory(caseId)).artifacts;
  }

  /**
   * One pass over every version and delete marker under the case (ListObjectVersions), then each
   * current artifact described. What the node could have written with its Job credentials (a key
   * no artifact name takes, a record that is not JSON, a second version of a key, ...) becomes a
   * problem, never an exception: an exception here would stop the seal and `amber verify`.
   */
  async inventory(caseId: string): Promise<Inventory> {
    const history = await this.scan(caseId);
    const artifacts: StoredArtifact[] = [];
    const problems: StoreProblem[] = [];
    const digestDir = `${bookkeepingDir}/digests/`;
    for (const [name, h] of [...history].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (name.startsWith(`${bookkeepingDir}/`)) {
        if (name.startsWith(digestDir) && name.endsWith('.json') && rewritten(h))
          problems.push({
            what: problemName(name),
            reason: `digest record ${historyText(h)}`,
            taints: name.slice(digestDir.length, -'.json'.length),
          });
        continue;
      }
      const what = problemName(name);
      if (!artifactNameSchema.safeParse(name).success) {
        problems.push({ what, reason: 'a key no artifact name can take (Amber never writes one): not read' });
        continue;
      }
      if (h.latestDeleted) {
        problems.push({ what, reason: `deleted: ${historyText(h)}`, taints: name });
        continue;
      }
      if (rewritten(h)) problems.push({ what, reason: historyText(h), taints: name });
      const described = await this.describe(caseId, name);
      problems.push(...described.problems);
      if (described.artifact) artifacts.push(described.artifact);
    }
    return { artifacts: artifacts.sort((a, b) => a.name.localeCompare(b.name)), problems };
  }

  /**
   * Versions and delete markers per artifact name. On a versioned (Object Lock) bucket anyone
   * allowed to PutObject can stack a new version on a locked key, or hide it with a delete
   * marker; the locked original survives, but what a reader downloads changes. More than one
   * entry here means someone did that.
   */
  async versionHistory(caseId: string): Promise<Map<string, { versions: number; deleteMarkers: number }>> {
    const out = new Map<string, { versions: number; deleteMarkers: number }>();
    for (const [name, h] of await this.scan(caseId))
      if (!name.startsWith(`${bookkeepingDir}/`))
        out.set(name, { versions: h.versions, deleteMarkers: h.deleteMarkers });
    return out;
  }

  /** Every key under the case (relative to it, bookkeeping included) with its history. */
  private async scan(caseId: string): Promise<Map<string, KeyHistory>> {
    const casePrefix = `${this.caseKey(caseId)}/`;
    const history = new Map<string, KeyHistory>();
    const entry = (key: string | undefined) => {
      const name = key?.slice(casePrefix.length) ?? '';
      let h = history.get(name);
      if (!h) history.set(name, (h = { versions: 0, deleteMarkers: 0, latestDeleted: false }));
      return h;
    };
    let markers: { KeyMarker?: string; VersionIdMarker?: string } = {};
    for (;;) {
      const page = await this.client.send(
        new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: casePrefix, ...markers }),
      );
      for (const v of page.Versions ?? []) entry(v.Key).versions++;
      for (const m of page.DeleteMarkers ?? []) {
        const h = entry(m.Key);
        h.deleteMarkers++;
        if (m.IsLatest) h.latestDeleted = true;
      }
      if (!page.IsTruncated) break;
      markers = { KeyMarker: page.NextKeyMarker, VersionIdMarker: page.NextVersionIdMarker };
    }
    return history;
  }

  /** What the store says of one artifact, and what is wrong with its digest record. */
  private async describe(
    caseId: string,
    name: string,
  ): Promise<{ artifact?: StoredArtifact; problems: StoreProblem[] }> {
    const key = this.key(caseId, name);
    const head = await this.head(key);
    if (!head) return { problems: [{ what: name, reason: 'vanished while the case was listed' }] };
    const problems: StoreProblem[] = [];
    const recordName = `${bookkeepingDir}/digests/${name}.json`;
    let record = await this.getDigestRecord(caseId, name);
    if (record && 'corrupt' in record) {
      problems.push({
        what: problemName(recordName),
        reason: `not a digest record (${record.corrupt}): the digest is computed from the bytes`,
        taints: name,
      });
      record = undefined;
    } else if (record && record.size !== head.ContentLength) {
      problems.push({
        what: problemName(recordName),
        reason: `says ${record.size} bytes, the store holds ${head.ContentLength}: the digest is computed from the bytes`,
        taints: name,
      });
      record = undefined;
    } else if (record?.versionId && head.VersionId && record.versionId !== head.VersionId) {
      problems.push({
        what: problemName(recordName),
        reason: `names version ${record.versionId}, the store serves ${head.VersionId}`,
        taints: name,
      });
    }
    let sha256 = record?.sha256;
    // No record: the writer died between the artifact and its record. The bytes tell the digest.
    if (!sha256) {
      try {
        sha256 = (await sha256OfStream(await this.get(caseId, name))).sha256;
      } catch (err) {
        if (!/^artifact not found/.test((err as Error).message)) throw err;
        return { problems: [...problems, { what: name, reason: 'vanished while the case was listed' }] };
      }
    }
    return {
      problems,
      artifact: {
        name,
        uri: `s3://${this.bucket}/${key}`,
        size: head.ContentLength ?? 0,
        sha256,
        ...(head.ObjectLockRetainUntilDate && {
          retainUntil: head.ObjectLockRetainUntilDate.toISOString(),
        }),
        ...(head.ObjectLockMode && { retentionMode: head.ObjectLockMode }),
        legalHold: head.ObjectLockLegalHoldStatus === 'ON',
        ...(head.VersionId && { versionId: head.VersionId }),
        ...(record?.metadata && { metadata: record.metadata }),
      },
    };
  }

  private async putDigestRecord(
    caseId: string,
    name: string,
    record: DigestRecord,
    lock: Pick<
      HeadObjectCommandOutput,
      'ObjectLockMode' | 'ObjectLockRetainUntilDate' | 'ObjectLockLegalHoldStatus'
    >,
  ): Promise<void> {
    const key = this.digestRecordKey(caseId, name);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: JSON.stringify(record),
          ContentType: 'application/json',
          ChecksumAlgorithm: 'SHA256',
          IfNoneMatch: '*',
          ...lock,
        }),
      );
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      // Our own earlier attempt (its answer lost) is fine; a different record is not.
      const existing = await this.getDigestRecord(caseId, name).catch((e: unknown) => {
        if (isForbidden(e))
          throw new Error(
            `a digest record exists already for s3://${this.bucket}/${key} and this credential cannot read it`,
          );
        throw e;
      });
      if (
        !existing ||
        'corrupt' in existing ||
        existing.sha256 !== record.sha256 ||
        existing.size !== record.size
      ) {
        throw new Error(`a different digest record exists already for s3://${this.bucket}/${key}`);
      }
    }
  }

  private async getDigestRecord(
    caseId: string,
    name: string,
  ): Promise<DigestRecord | { corrupt: string } | undefined> {
    const key = this.digestRecordKey(caseId, name);
    let text: string;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      text = (await res.Body?.transformToString('utf8')) ?? '';
    } catch (err) {
      if ((err as Error).name === 'NoSuchKey') return undefined;
      throw err;
    }
    return parseDigestRecord(text);
  }

  /** HEAD, or 'forbidden' when this credential may write but not read (a collection Job's). */
  private async headIfAllowed(key: string): Promise<HeadObjectCommandOutput | 'forbidden' | undefined> {
    try {
      return await this.head(key);
    } catch (err) {
      if (isForbidden(err)) return 'forbidden';
      throw err;
    }
  }

  private async head(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      // ChecksumMode: a put that finds its own object after a lost answer checks the store's checksum.
      return await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: 'ENABLED' }),
      );
    } catch (err) {
      // HEAD has no body, so a missing key is a bare 404 ("NotFound"), not NoSuchKey.
      if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  private caseKey(caseId: string): string {
    return s3CaseKey(this.prefix, caseId);
  }

  private key(caseId: string, name: string): string {
    return `${this.caseKey(caseId)}/${parseArtifactName(name)}`;
  }

  private digestRecordKey(caseId: string, name: string): string {
    return `${this.caseKey(caseId)}/${bookkeepingDir}/digests/${parseArtifactName(name)}.json`;
  }
}

/** `<prefix>/<case>`: the key under which a case's objects live (no trailing slash). */
export function s3CaseKey(prefix: string, caseId: string): string {
  return [prefix.replace(/^\/+|\/+$/g, ''), parseCaseId(caseId)].filter(Boolean).join('/');
}

interface KeyHistory {
  versions: number;
  deleteMarkers: number;
  /** The newest entry is a delete marker: a plain GET answers 404. */
  latestDeleted: boolean;
}

/** Amber writes every key once (If-None-Match): a second version or a delete marker is someone else. */
function rewritten(h: KeyHistory): boolean {
  return h.versions > 1 || h.deleteMarkers > 0;
}

function historyText(h: KeyHistory): string {
  const parts = [`${h.versions} version(s)`];
  if (h.deleteMarkers > 0) parts.push(`${h.deleteMarkers} delete marker(s)`);
  return `${parts.join(' and ')} of a key Amber writes once: written again after it was stored, not signed`;
}

function isForbidden(err: unknown): boolean {
  return err instanceof S3ServiceException && err.$metadata.httpStatusCode === 403;
}

function isPreconditionFailed(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    (err.name === 'PreconditionFailed' || err.$metadata.httpStatusCode === 412)
  );
}

/**
 * For a single-part object the store's checksum is the plain SHA-256 of the bytes it kept: it
 * must equal the digest computed while streaming. (Multipart checksums are composite, "<b64>-N".)
 */
function checkSinglePartChecksum(uri: string, record: DigestRecord): void {
  const stored = record.storeChecksumSha256;
  if (!stored || stored.includes('-')) return;
  const ours = Buffer.from(record.sha256, 'hex').toString('base64');
  if (stored !== ours) {
    throw new Error(`store checksum of ${uri} (${stored}) differs from the streamed SHA-256 (${ours})`);
  }
}

/** x-amz-meta-* headers for people browsing the bucket; the digest record is what Amber reads. */
function userMetadata(meta: ArtifactMetadata | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v: string | undefined) => {
    // Header values must be ASCII: percent-encode anything else.
    if (v) out[k] = encodeURIComponent(v);
  };
  put('amber-collected-by', meta?.collectedBy);
  put('amber-collected-at', meta?.collectedAt);
  put('amber-node', meta?.node);
  put('amber-container-id', meta?.containerId);
  return out;
}
