import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { silentLogger } from '../observability/logger.js';
import { DigestingStream, sha256OfStream, toReadable } from './hashing.js';
import { recordedPut, storeMetrics, type StoreMetrics } from './metrics.js';
import {
  bookkeepingDir,
  digestRecordSchema,
  parseArtifactName,
  parseCaseId,
  type DigestRecord,
} from './names.js';
import {
  ArtifactExistsError,
  type ArtifactMetadata,
  type EvidenceStore,
  type StoredArtifact,
} from './store.js';

export interface LocalStoreOptions {
  /** Directory holding one sub-directory per case. */
  root: string;
  registry: Registry;
  logger?: Logger;
}

/**
 * Evidence in a local directory (offline work, the local default setup). A filesystem has no
 * WORM retention, so this store does what it can: files are created exclusively (never
 * replaced), fsynced, and left read-only (0444); the signed manifest is what proves integrity.
 *
 * Layout: <root>/<case>/<name> for artifacts, <root>/<case>/.amber/digests/<name>.json for the
 * digest recorded at write time, <root>/<case>/.amber/tmp/ for files being written.
 */
export class LocalEvidenceStore implements EvidenceStore {
  private readonly root: string;
  private readonly logger: Logger;
  private readonly metrics: StoreMetrics;

  constructor(opts: LocalStoreOptions) {
    this.root = resolve(opts.root);
    this.logger = (opts.logger ?? silentLogger).child({ component: 'evidence-store', store: 'local' });
    this.metrics = storeMetrics(opts.registry);
  }

  caseLocation(caseId: string): string {
    return `${pathToFileURL(this.caseDir(caseId)).href}/`;
  }

  async put(
    caseId: string,
    name: string,
    body: Readable | Buffer | string,
    meta?: ArtifactMetadata,
  ): Promise<StoredArtifact> {
    const path = this.artifactPath(caseId, name);
    const uri = pathToFileURL(path).href;
    const source = toReadable(body);
    return recordedPut(
      { metrics: this.metrics, logger: this.logger, store: 'local', caseId, source },
      async () => {
        // Fail before streaming a large body into a file that cannot be published anyway.
        if (await exists(path)) throw new ArtifactExistsError(uri);
        const digester = new DigestingStream();
        await this.writeOnce(caseId, path, uri, source, digester);
        const record: DigestRecord = {
          sha256: digester.sha256,
          size: digester.bytes,
          storedAt: new Date().toISOString(),
          ...(meta && { metadata: meta }),
        };
        // The artifact first, its digest record second: a crash in between leaves an artifact
        // whose digest list() recomputes, never a record pointing at nothing.
        const recordPath = this.digestRecordPath(caseId, name);
        await this.writeOnce(
          caseId,
          recordPath,
          pathToFileURL(recordPath).href,
          toReadable(JSON.stringify(record)),
        );
        return { name, uri, size: record.size, sha256: record.sha256, ...(meta && { metadata: meta }) };
      },
    );
  }

  async get(caseId: string, name: string): Promise<Readable> {
    const path = this.artifactPath(caseId, name);
    if (!(await exists(path))) throw new Error(`artifact not found: ${pathToFileURL(path).href}`);
    return createReadStream(path);
  }

  async list(caseId: string): Promise<StoredArtifact[]> {
    const dir = this.caseDir(caseId);
    if (!(await exists(dir))) return [];
    const out: StoredArtifact[] = [];
    for (const path of await walk(dir, join(dir, bookkeepingDir))) {
      const name = relative(dir, path).split(sep).join('/');
      const { size } = await stat(path);
      const record = await this.readDigestRecord(caseId, name);
      // Without a record (crash between the two writes), the digest is recomputed from the bytes.
      const sha256 = record?.sha256 ?? (await sha256OfStream(createReadStream(path))).sha256;
      out.push({
        name,
        uri: pathToFileURL(path).href,
        size,
        sha256,
        ...(record?.metadata && { metadata: record.metadata }),
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** File mode bits of an artifact, for verify to flag files made writable again. */
  async mode(caseId: string, name: string): Promise<number> {
    return (await stat(this.artifactPath(caseId, name))).mode & 0o777;
  }

  private caseDir(caseId: string): string {
    return join(this.root, parseCaseId(caseId));
  }

  private artifactPath(caseId: string, name: string): string {
    return join(this.caseDir(caseId), ...parseArtifactName(name).split('/'));
  }

  private digestRecordPath(caseId: string, name: string): string {
    return join(
      this.caseDir(caseId),
      bookkeepingDir,
      'digests',
      ...`${parseArtifactName(name)}.json`.split('/'),
    );
  }

  private async readDigestRecord(caseId: string, name: string): Promise<DigestRecord | undefined> {
    const path = this.digestRecordPath(caseId, name);
    if (!(await exists(path))) return undefined;
    const parsed = digestRecordSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
    if (!parsed.success) throw new Error(`corrupt digest record ${path}: ${parsed.error.message}`);
    return parsed.data;
  }

  /**
   * Writes a file that never existed and never changes: the bytes go to a fresh temporary file
   * (O_EXCL), are fsynced and made read-only, then hard-linked to the final name. link(2) fails
   * when the name exists, so publishing is atomic and can never replace evidence, and a crash
   * mid-write leaves only a stray temporary file, not a truncated artifact.
   */
  private async writeOnce(
    caseId: string,
    path: string,
    uri: string,
    source: Readable,
    digester?: DigestingStream,
  ): Promise<void> {
    const tmpDir = join(this.caseDir(caseId), bookkeepingDir, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const tmp = join(tmpDir, randomUUID());
    try {
      const file = await open(tmp, 'wx', 0o600);
      try {
        // Writes through our own handle (kept open for fsync and chmod); an fs.WriteStream with
        // autoClose: false never emits 'close', which stalls pipeline().
        const sink = new Writable({
          write: (chunk: Buffer, _encoding, callback) => {
            writeAll(file, chunk).then(() => callback(), callback);
          },
        });
        await (digester ? pipeline(source, digester, sink) : pipeline(source, sink));
        await file.sync();
        await file.chmod(0o444);
      } finally {
        await file.close();
      }
      await mkdir(dirname(path), { recursive: true });
      await link(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ArtifactExistsError(uri);
      throw err;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    await fsyncDir(dirname(path));
  }
}

async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length;) {
    offset += (await file.write(chunk, offset)).bytesWritten;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The new directory entry is durable only once its directory is fsynced. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Every regular file under `dir`, skipping the `skip` directory. */
async function walk(dir: string, skip: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== skip) out.push(...(await walk(path, skip)));
    } else if (entry.isFile()) {
      out.push(path);
    }
  }
  return out;
}
