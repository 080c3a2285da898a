import type { Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pack as tarPack, type Header } from 'tar-stream';
import type { ArtifactMetadata, EvidenceStore, StoredArtifact } from '../evidence/store.js';
import { errorMessage } from './report.js';
import type { Dir } from './safe-fs.js';

type EntryHeader = Partial<Header> & Pick<Header, 'name'>;

const CHUNK = 1024 * 1024;

/** Caps on what one tar may hold; what is left out is reported, never silently dropped. */
export interface TarLimits {
  maxFileBytes: number;
  maxTotalBytes: number;
  /** Entries of every kind: a tree of a million empty files is also a way to stall a collection. */
  maxEntries: number;
  /** Directory levels below the top; deeper is recorded, not walked. */
  maxDepth: number;
}

export interface TarGap {
  path: string;
  reason: string;
  kind: 'failed' | 'skipped';
}

/** One entry of a walk: `parent` holds the directory it was found in (undefined for the top). */
export interface WalkEntry {
  parent: Dir | undefined;
  name: string | undefined;
  rel: string;
  st: Stats;
}

/** Thrown inside a walk when a cap or the deadline ends it: the rest is one recorded gap. */
class StopWalk extends Error {}

/**
 * Depth-first walk of a directory the container controls, every step relative to a directory
 * descriptor (safe-fs.ts): a symlink is yielded as itself and never followed, a directory that
 * is swapped or removed after its lstat is a recorded gap and the walk goes on. Sorted for a
 * reproducible archive order. `exclude` (relative paths) is for mount points below the top.
 */
export async function* walkDir(
  top: Dir,
  onError: (rel: string, err: unknown) => void,
  opts: { exclude?: Set<string>; maxDepth?: number; signal?: AbortSignal } = {},
  rel = '',
  depth = 0,
): AsyncGenerator<WalkEntry> {
  if (depth === 0) yield { parent: undefined, name: undefined, rel: '', st: top.st };
  if (depth >= (opts.maxDepth ?? 256)) {
    onError(rel, new Error(`more than ${opts.maxDepth ?? 256} directory levels deep: not walked below`));
    return;
  }
  let names: string[];
  try {
    names = await top.names();
  } catch (err) {
    onError(rel || '.', err);
    return;
  }
  for (const name of names) {
    if (opts.signal?.aborted) return;
    const childRel = rel ? `${rel}/${name}` : name;
    if (opts.exclude?.has(childRel)) continue;
    let st: Stats;
    try {
      st = await top.lstat(name);
    } catch (err) {
      onError(childRel, err);
      continue;
    }
    yield { parent: top, name, rel: childRel, st };
    if (!st.isDirectory()) continue;
    let sub: Dir;
    try {
      sub = await top.openDir(name, st);
    } catch (err) {
      onError(childRel, err);
      continue;
    }
    try {
      yield* walkDir(sub, onError, opts, childRel, depth + 1);
    } finally {
      await sub.close();
    }
  }
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
  private stopped = false;

  constructor(
    private readonly limits: TarLimits,
    private readonly signal: AbortSignal = new AbortController().signal,
  ) {}

  /**
   * Adds one entry found by a walk (not its children) as `name`. A regular file is opened (and
   * proven to be the file the walk saw) before its header is written, so an unreadable or
   * swapped file is a recorded gap and not a broken archive. The header announces the size seen
   * on the opened descriptor, and exactly that many bytes are read: a file that grows meanwhile
   * is cut there, one that shrinks is padded with zeros, and both are recorded.
   */
  async add(e: WalkEntry, name: string, pax?: Record<string, string>): Promise<void> {
    if (this.stopped) return;
    if (this.signal.aborted) return this.stop(name, `deadline reached after ${this.entries} entries`);
    if (this.entries >= this.limits.maxEntries)
      return this.stop(name, `the archive's cap of ${this.limits.maxEntries} entries is reached`);
    const { st } = e;
    const header: EntryHeader = {
      name,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      ...(pax && { pax }),
    };
    if (st.isDirectory()) return this.write({ ...header, type: 'directory' });
    if (st.isSymbolicLink()) {
      if (!e.parent || e.name === undefined)
        return this.gap(name, 'failed', 'a symlink as the top of a tree');
      let linkname: string;
      try {
        linkname = await e.parent.readlink(e.name, st);
      } catch (err) {
        return this.gap(name, 'failed', errorMessage(err));
      }
      return this.write({ ...header, type: 'symlink', linkname });
    }
    // Devices and FIFOs are recorded by their header (type, mode, rdev) and never opened.
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      return this.write({
        ...header,
        type: st.isCharacterDevice() ? 'character-device' : 'block-device',
        devmajor: major(st.rdev),
        devminor: minor(st.rdev),
      });
    }
    if (st.isFIFO()) return this.write({ ...header, type: 'fifo' });
    if (!st.isFile())
      return this.gap(
        name,
        'skipped',
        `socket (mode ${(st.mode & 0o7777).toString(8)}): not archivable, not read`,
      );
    if (!e.parent || e.name === undefined) return this.gap(name, 'failed', 'a file as the top of a tree');
    let handle: FileHandle;
    try {
      handle = await e.parent.openFile(e.name, st);
    } catch (err) {
      return this.gap(name, 'failed', errorMessage(err));
    }
    try {
      // The size of what was opened, not of what the walk saw: the header is written after the check.
      const size = (await handle.stat()).size;
      if (size > this.limits.maxFileBytes)
        return this.gap(
          name,
          'skipped',
          `${size} bytes exceeds the per-file cap of ${this.limits.maxFileBytes}; not read`,
        );
      if (this.totalBytes + size > this.limits.maxTotalBytes)
        return this.gap(
          name,
          'skipped',
          `${size} bytes would exceed the archive cap of ${this.limits.maxTotalBytes}; not read`,
        );
      this.totalBytes += size;
      let short: string | undefined;
      await this.writeFile(
        { ...header, type: 'file', size },
        exactBytes(handle, size, this.signal, (why) => (short = why)),
      );
      if (short) this.gap(name, 'failed', short);
      else if (await grewPast(handle, size))
        this.gap(name, 'skipped', `grew while being read: only the first ${size} bytes archived`);
      this.entries++;
    } finally {
      await handle.close();
    }
  }

  /**
   * Adds a directory and everything below it as `prefix/...` (as `.` and relative names when
   * `prefix` is ''), not crossing into `exclude`; `paxOf` adds pax records to an entry.
   */
  async addTree(
    top: Dir,
    prefix: string,
    exclude?: Set<string>,
    paxOf?: (rel: string) => Record<string, string> | undefined,
  ): Promise<void> {
    const nameOf = (rel: string): string => (prefix ? (rel ? `${prefix}/${rel}` : prefix) : rel || '.');
    const onError = (rel: string, err: unknown): void => this.gap(nameOf(rel), 'failed', errorMessage(err));
    try {
      for await (const e of walkDir(top, onError, {
        exclude,
        maxDepth: this.limits.maxDepth,
        signal: this.signal,
      })) {
        await this.add(e, nameOf(e.rel), paxOf?.(e.rel));
        if (this.stopped) throw new StopWalk();
      }
      if (this.signal.aborted) this.stop(nameOf(''), `deadline reached after ${this.entries} entries`);
    } catch (err) {
      if (!(err instanceof StopWalk)) throw err;
    }
  }

  gap(path: string, kind: TarGap['kind'], reason: string): void {
    this.gaps.push({ path, kind, reason });
  }

  private stop(at: string, why: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.gap(at, 'failed', `${why}: this entry and the rest of the walk are not archived`);
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
  signal?: AbortSignal,
): Promise<{ artifact: StoredArtifact; gaps: TarGap[]; entries: number }> {
  const t = new TarStreamer(limits, signal);
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

/**
 * Yields exactly `size` bytes of an open file and never reads past them: zeros after an early
 * end, a read error or the deadline (reported once), so the header's size stays true.
 */
async function* exactBytes(
  handle: FileHandle,
  size: number,
  signal: AbortSignal,
  onShort: (why: string) => void,
): AsyncGenerator<Buffer> {
  let pos = 0;
  let failed = false;
  while (pos < size) {
    const len = Math.min(CHUNK, size - pos);
    let n = 0;
    if (!failed && signal.aborted) {
      onShort(`deadline reached at byte ${pos} of ${size}; padded with zeros`);
      failed = true;
    }
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

/** Whether there is a byte at `offset`: the file grew past what was archived. One byte is read, not kept. */
export async function grewPast(handle: FileHandle, offset: number): Promise<boolean> {
  try {
    const { bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, offset);
    return bytesRead > 0;
  } catch {
    return false;
  }
}

/** Linux dev_t encoding (glibc's gnu_dev_major/minor). */
export function major(rdev: number): number {
  return ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
}
export function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
}
