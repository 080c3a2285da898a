import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { binary } from './binaries.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';

export interface MinioOptions {
  /** Name of the bucket created at start, with Object Lock enabled. */
  bucket?: string;
}

export interface Minio {
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  /** Created at start WITH Object Lock (and so versioning) enabled. */
  bucket: string;
  dataDir: string;
  /** A client with path-style addressing and the root credentials; retries like the store's. */
  client(): S3Client;
  /** Creates another bucket, with or without Object Lock. */
  createBucket(name: string, opts: { objectLock: boolean }): Promise<void>;
  /** Graceful stop; removes the data directory. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, the data directory stays (restart() brings it back). */
  kill(): Promise<void>;
  /** Starts again on the same port with the same data (after kill() or a stop of the process). */
  restart(): Promise<void>;
}

/**
 * A real MinIO server for one test file: its own temp dir, free ports, root credentials.
 * Single-drive mode supports Object Lock, versioning and conditional writes like S3 does.
 */
export async function startMinio(opts: MinioOptions = {}): Promise<Minio> {
  const dir = mkdtempSync(join(tmpdir(), 'amber-minio-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const port = await freePort();
  const consolePort = await freePort();
  const accessKey = 'amber-test';
  const secretKey = 'amber-test-secret';
  const region = 'us-east-1';
  const endpoint = `http://127.0.0.1:${port}`;
  const bucket = opts.bucket ?? 'evidence';
  const minio = binary('minio');
  const clients: S3Client[] = [];
  let proc: ManagedProcess | undefined;

  const launch = async () => {
    proc = ManagedProcess.start(
      'minio',
      minio,
      ['server', dataDir, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`],
      {
        logFile: join(dir, 'minio.log'),
        env: {
          MINIO_ROOT_USER: accessKey,
          MINIO_ROOT_PASSWORD: secretKey,
          MINIO_REGION: region,
          // No phoning home for updates from a test.
          MINIO_UPDATE: 'off',
        },
      },
    );
    await proc.waitUntil(async () => (await fetch(`${endpoint}/minio/health/live`)).ok, 60_000);
  };

  const client = () => {
    const c = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
      maxAttempts: 10,
    });
    clients.push(c);
    return c;
  };

  const createBucket = async (name: string, o: { objectLock: boolean }) => {
    const c = client();
    await c.send(new CreateBucketCommand({ Bucket: name, ObjectLockEnabledForBucket: o.objectLock }));
  };

  try {
    await launch();
    await createBucket(bucket, { objectLock: true });
  } catch (err) {
    await proc?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    endpoint,
    region,
    accessKey,
    secretKey,
    bucket,
    dataDir,
    client,
    createBucket,
    async stop() {
      for (const c of clients) c.destroy();
      await proc?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      await proc?.kill();
    },
    async restart() {
      if (proc?.running) await proc.stop();
      await launch();
    },
  };
}
