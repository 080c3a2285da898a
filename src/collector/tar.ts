import type { Stats } from 'node:fs';
import { lstat, open, readdir, readlink, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack, type Header } from 'tar-stream';
import type { ArtifactMetadata, EvidenceStore, StoredArtifact } from '../evidence/store.js';
import { errorMessage } from './report.js';

type EntryHeader = Partial<Header> & Pick<Header, 'name'>;

const CHUNK = 1024 * 1024;

/** Caps on what one tar may hold; what is left out is reported, never silently dropped. */
export interface TarLimits {
  maxFileBytes: number;
  maxTotalBytes: number;
}

export interface TarGap {
  path: string;
  reason: string;
  kind: 'failed' | 'skipped';
}

/**
 * Builds a tar on the fly into the evidence store: entries are read from the file system one
 * at a time and piped straight into the upload, so memory stays constant and nothing is staged
 * on the collector's disk.
 */
export class TarStreamer {
  /** tar-stream's pack is a streamx stream; `readable` adapts it for the store, which takes a Node Readable. */
  readonly pack = tarPack();
  readonly readable = Readable.from(this.pack);
  readonly gaps: TarGap[] = [];
  totalBytes = 0;
  entries = 0;

  constructor(private readonly limits: TarLimits) {}

  /**
   * Adds one file system object (not its children) as `name`. Regular files are opened before
   * their header is written, so an unreadable file is a recorded gap and not a broken archive;
   * a file that shrinks while it is read is padded with zeros to the size its header announced.
   */
  async add(path: string, name: string, st: Stats, pax?: Record<string, string>): Promise<void> {
    const header: EntryHeader = {
      name,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      ...(pax && { pax }),
    };
    if (st.isDirectory()) return this.write({ ...header, type: 'directory' });
    if (st.isSymbolicLink())
      return this.write({ ...header, type: 'symlink', linkname: await readlink(path) });
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      return this.write({
        ...header,
        type: st.isCharacterDevice() ? 'character-device' : 'block-device',
        devmajor: major(st.rdev),
        devminor: minor(st.rdev),
      });
    }
    if (st.isFIFO()) return this.write({ ...header, type: 'fifo' });
    if (!st.isFile()) return this.gap(name, 'skipped', 'socket or other special file: not archivable');
    if (st.size > this.limits.maxFileBytes)
      return this.gap(
        name,
        'skipped',
        `${st.size} bytes exceeds the per-file cap of ${this.limits.maxFileBytes}`,
      );
    if (this.totalBytes + st.size > this.limits.maxTotalBytes) {
      return this.gap(
        name,
        'skipped',
        `${st.size} bytes would exceed the archive cap of ${this.limits.maxTotalBytes}`,
      );
    }
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      return this.gap(name, 'failed', errorMessage(err));
    }
    try {
      let short: string | undefined;
      await this.writeFile(
        { ...header, type: 'file', size: st.size },
        exactBytes(handle, st.size, (why) => (short = why)),
      );
      if (short) this.gap(name, 'failed', short);
      this.totalBytes += st.size;
      this.entries++;
    } finally {
      await handle.close();
    }
  }

  /**
   * Adds `dir` and everything below it as `prefix/...`, not crossing into the paths in
   * `exclude` (absolute paths of mount points, typically).
   */
  async addTree(
    dir: string,
    prefix: string,
    exclude: Set<string> = new Set(),
    followTop = false,
  ): Promise<void> {
    for await (const { path, rel, st } of walk(
      dir,
      exclude,
      (p, err) => this.gap(p, 'failed', errorMessage(err)),
      '',
      followTop,
    )) {
      await this.add(path, rel ? `${prefix}/${rel}` : prefix, st);
    }
  }

  gap(path: string, kind: TarGap['kind'], reason: string): void {
    this.gaps.push({ path, kind, reason });
  }

  /** One file entry, honouring the pack's backpressure so a large file never sits in memory. */
  private async writeFile(header: EntryHeader, body: AsyncIterable<Buffer>): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const entry = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
      void (async () => {
        for await (const chunk of body) {
          if (!entry.write(chunk)) await new Promise<void>((r) => entry.once('drain', () => r()));
        }
        entry.end(undefined);
      })().catch((err: unknown) => {
        entry.destroy(err as Error);
        reject(err as Error);
      });
    });
  }

  private async write(header: EntryHeader): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.pack.entry(header, (err) => (err ? reject(err) : resolve())),
    );
    this.entries++;
  }
}

/**
 * Streams a tar into the store while `fill` adds entries. If the store fails, the pack is
 * destroyed so `fill` stops at its next entry instead of waiting on a reader that is gone.
 */
export async function storeTar(
  store: EvidenceStore,
  caseId: string,
  name: string,
  limits: TarLimits,
  meta: ArtifactMetadata,
  fill: (t: TarStreamer) => Promise<void>,
): Promise<{ artifact: StoredArtifact; gaps: TarGap[]; entries: number }> {
  const t = new TarStreamer(limits);
  const upload = store.put(caseId, name, t.readable, { contentType: 'application/x-tar', ...meta });
  upload.catch((err: unknown) => t.pack.destroy(err instanceof Error ? err : new Error(String(err))));
  try {
    await fill(t);
    t.pack.finalize();
  } catch (err) {
    t.pack.destroy(err instanceof Error ? err : new Error(String(err)));
  }
  return { artifact: await upload, gaps: t.gaps, entries: t.entries };
}

/** Yields exactly `size` bytes of an open file: zeros after an early end or a read error (reported once). */
async function* exactBytes(
  handle: FileHandle,
  size: number,
  onShort: (why: string) => void,
): AsyncGenerator<Buffer> {
  let pos = 0;
  let failed = false;
  while (pos < size) {
    const len = Math.min(CHUNK, size - pos);
    let n = 0;
    // Zeros only where padding is needed; a read fills the buffer it is given.
    let buf = failed ? Buffer.alloc(len) : Buffer.allocUnsafe(len);
    if (!failed) {
      try {
        ({ bytesRead: n } = await handle.read(buf, 0, len, pos));
      } catch (err) {
        onShort(`read failed at byte ${pos}: ${errorMessage(err)}; padded with zeros`);
        failed = true;
      }
      if (n === 0 && !failed) {
        onShort(`file shrank to ${pos} bytes while being read (had ${size}); padded with zeros`);
        failed = true;
      }
    }
    if (failed && n === 0) buf.fill(0);
    else if (n < len) buf = buf.subarray(0, n);
    yield buf;
    pos += buf.length;
  }
}

/**
 * Depth-first walk with lstat: symlinks are archived, never followed, because an absolute link
 * planted in a container would resolve against the collector's (the host's) root. `followTop`
 * is for /proc/<pid>/root itself, a link the kernel resolves into the container.
 * Sorted for a reproducible archive order.
 */
export async function* walk(
  dir: string,
  exclude: Set<string>,
  onError: (path: string, err: unknown) => void,
  rel = '',
  followTop = false,
): AsyncGenerator<{ path: string; rel: string; st: Stats }> {
  let st: Stats;
  try {
    st = followTop ? await stat(dir) : await lstat(dir);
  } catch (err) {
    onError(rel || dir, err);
    return;
  }
  yield { path: dir, rel, st };
  if (!st.isDirectory()) return;
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    onError(rel || dir, err);
    return;
  }
  for (const n of names) {
    const child = join(dir, n);
    if (exclude.has(child)) continue;
    yield* walk(child, exclude, onError, rel ? `${rel}/${n}` : n);
  }
}

/** Linux dev_t encoding (glibc's gnu_dev_major/minor). */
export function major(rdev: number): number {
  return ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
}
export function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
}

/**
 * `root` + `rel` for reading a container's file from the host, refusing a path whose directories
 * include a symlink: the kernel would resolve an absolute one against the host's root and the
 * collector would read (and store) a host file. The last component is not checked: callers lstat it.
 */
export async function containedPath(root: string, rel: string): Promise<string> {
  const parts = rel.split('/').filter(Boolean);
  let path = root;
  for (const part of parts.slice(0, -1)) {
    path = join(path, part);
    if ((await lstat(path)).isSymbolicLink())
      throw new Error(`${path.slice(root.length)} is a symlink in the container: not followed from the host`);
  }
  return join(root, ...parts);
}
