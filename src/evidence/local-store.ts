import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises';
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
  artifactNameSchema,
  bookkeepingDir,
  parseArtifactName,
  parseCaseId,
  parseDigestRecord,
  type DigestRecord,
} from './names.js';
import {
  ArtifactExistsError,
  problemName,
  type ArtifactMetadata,
  type EvidenceStore,
  type Inventory,
  type StoreProblem,
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
    return (await this.inventory(caseId)).artifacts;
  }

  /** Every artifact; a name no artifact takes, a corrupt record or an odd file is a problem, never a throw. */
  async inventory(caseId: string): Promise<Inventory> {
    const dir = this.caseDir(caseId);
    const artifacts: StoredArtifact[] = [];
    const problems: StoreProblem[] = [];
    if (!(await exists(dir))) return { artifacts, problems };
    const found = await walk(dir, join(dir, bookkeepingDir));
    for (const { path, regular } of found) {
      const name = relative(dir, path).split(sep).join('/');
      const what = problemName(name);
      if (!regular) {
        problems.push({ what, reason: 'not a regular file or directory: not read' });
        continue;
      }
      if (!artifactNameSchema.safeParse(name).success) {
        problems.push({ what, reason: 'a name no artifact can take (Amber never writes one): not read' });
        continue;
      }
      const { size } = await stat(path);
      let record = await this.readDigestRecord(caseId, name);
      if (record && 'corrupt' in record) {
        problems.push({
          what: problemName(`${bookkeepingDir}/digests/${name}.json`),
          reason: `not a digest record (${record.corrupt}): the digest is computed from the bytes`,
          taints: name,
        });
        record = undefined;
      } else if (record && record.size !== size) {
        problems.push({
          what: problemName(`${bookkeepingDir}/digests/${name}.json`),
          reason: `says ${record.size} bytes, the file holds ${size}: the digest is computed from the bytes`,
          taints: name,
        });
        record = undefined;
      }
      // Without a record (crash between the two writes), the digest is recomputed from the bytes.
      const sha256 = record?.sha256 ?? (await sha256OfStream(createReadStream(path))).sha256;
      artifacts.push({
        name,
        uri: pathToFileURL(path).href,
        size,
        sha256,
        ...(record?.metadata && { metadata: record.metadata }),
      });
    }
    return { artifacts: artifacts.sort((a, b) => a.name.localeCompare(b.name)), problems };
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

  private async readDigestRecord(
    caseId: string,
    name: string,
  ): Promise<DigestRecord | { corrupt: string } | undefined> {
    const path = this.digestRecordPath(caseId, name);
    let st;
    try {
      st = await lstat(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      if (code === 'ENOTDIR') return { corrupt: 'a file stands where its directory should be' };
      throw err;
    }
    if (!st.isFile()) return { corrupt: 'not a regular file' };
    if (st.size > MAX_RECORD_BYTES) return { corrupt: `${st.size} bytes, a record is under a kilobyte` };
    return parseDigestRecord(await readFile(path, 'utf8'));
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

/** Every entry under `dir` but directories, skipping the `skip` directory; symlinks are not followed. */
async function walk(dir: string, skip: string): Promise<{ path: string; regular: boolean }[]> {
  const out: { path: string; regular: boolean }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== skip) out.push(...(await walk(path, skip)));
    } else {
      out.push({ path, regular: entry.isFile() });
    }
  }
  return out;
}

/** A digest record is a few hundred bytes; a larger file there is not one, and is not read. */
const MAX_RECORD_BYTES = 64 * 1024;
