/**
 * Reading a file system that a live attacker controls, from the host side (ADR 0008).
 *
 * The container can rename, swap, grow and delete anything while the collector reads it, plant
 * symlinks (an absolute one resolves against the collector's root: the host), FIFOs (an open for
 * reading blocks until a writer comes; a read blocks until data comes) and device nodes (an open
 * can have side effects). Node has no openat(2), so every lookup goes through the magic link of a
 * directory descriptor, `/proc/self/fd/<dir>/<name>`: the kernel resolves `<dir>` to the very
 * directory that descriptor holds, whatever happened to its path since, and `<name>` is one
 * component looked up inside it. Nothing is opened for reading before its descriptor proves it is
 * the regular file the walk saw:
 *
 *   lstat(name) -> open(name, O_PATH|O_NOFOLLOW) -> fstat: same type, dev, ino?
 *   -> reopen /proc/self/fd/<path fd> O_RDONLY|O_NONBLOCK|O_NOATIME -> fstat again
 *
 * O_PATH opens neither a FIFO nor a device (no blocking, no side effect), and O_NOFOLLOW makes a
 * symlink swapped in after the lstat an O_PATH descriptor of the link itself, which fstat shows.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';

/** Linux's O_PATH (include/uapi/asm-generic/fcntl.h), which Node does not export. */
const O_PATH = 0o10000000;
const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY, O_NOCTTY, O_NOATIME, S_IFMT } = constants;

export const fdPath = (fd: number, name?: string): string =>
  name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;

export type FileType =
  'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'character-device' | 'block-device' | 'unknown';

export function fileType(st: Stats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  return 'unknown';
}

/** The entry changed between the walk's lstat and the open: a swap race, never archived. */
export class ChangedError extends Error {
  readonly code = 'ECHANGED';
  constructor(what: string, seen: Stats, now: Stats) {
    super(
      `${what} changed while being read (was ${fileType(seen)} ${seen.dev}:${seen.ino}, ` +
        `opened ${fileType(now)} ${now.dev}:${now.ino}): not archived`,
    );
  }
}

/** Not a regular file: FIFOs, sockets and devices are recorded, never opened for reading. */
export class NotRegularError extends Error {
  readonly code = 'ENOTREG';
  constructor(
    what: string,
    readonly st: Stats,
  ) {
    super(`${what} is a ${fileType(st)} (mode ${(st.mode & 0o7777).toString(8)}): recorded, not read`);
  }
}

export function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino && (a.mode & S_IFMT) === (b.mode & S_IFMT);
}

/**
 * The error without the /proc/self/fd/N path Node puts in its message, which names nothing the
 * investigator knows: the report already says which entry it was.
 */
function plain(op: string): (err: NodeJS.ErrnoException) => never {
  return (err) => {
    if (!err.code) throw err;
    const e = new Error(`${err.code}: ${op} failed (${describeErrno(err.code)})`) as NodeJS.ErrnoException;
    e.code = err.code;
    throw e;
  };
}

function describeErrno(code: string): string {
  const known: Record<string, string> = {
    ENOENT: 'vanished while being walked',
    ELOOP: 'a symlink where a directory was seen: not followed',
    ENOTDIR: 'not a directory any more',
    EACCES: 'permission denied',
  };
  return known[code] ?? 'see the error code';
}

/** Opens for reading without touching the access time when the kernel lets us (root: always). */
async function openForReading(path: string): Promise<FileHandle> {
  const flags = O_RDONLY | O_NONBLOCK | O_NOCTTY;
  try {
    return await open(path, flags | O_NOATIME);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    return open(path, flags);
  }
}

/**
 * Reopens an O_PATH descriptor for reading if, and only if, it is the regular file `seen` says.
 * Closes `pathHandle` in every case.
 */
async function reopenRegular(what: string, pathHandle: FileHandle, seen: Stats): Promise<FileHandle> {
  try {
    const st = await pathHandle.stat();
    if (!sameFile(seen, st)) throw new ChangedError(what, seen, st);
    if (!st.isFile()) throw new NotRegularError(what, st);
    const handle = await openForReading(fdPath(pathHandle.fd));
    try {
      const again = await handle.stat();
      if (!sameFile(st, again)) throw new ChangedError(what, st, again);
      return handle;
    } catch (err) {
      await handle.close();
      throw err;
    }
  } finally {
    await pathHandle.close();
  }
}

/**
 * A directory held open by descriptor. Children are looked up inside it, one component at a time,
 * so neither a swapped parent nor a planted symlink can take a read out of it.
 */
export class Dir {
  private constructor(
    private readonly handle: FileHandle,
    readonly st: Stats,
    /** For messages only: where this directory was when it was opened. */
    readonly path: string,
  ) {}

  /**
   * The top of a walk: a host path (the writable layer's upper directory) or a magic link the
   * kernel resolves into the container (/proc/<pid>/root), so it is followed.
   */
  static async open(path: string): Promise<Dir> {
    const handle = await open(path, O_PATH | O_DIRECTORY);
    try {
      return new Dir(handle, await handle.stat(), path);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * `root` + `rel` where every directory on the way must be a real directory (a symlink on the
   * way is an error: it would be resolved by the host). The last component is not opened.
   */
  static async openContained(root: string, rel: string): Promise<{ dir: Dir; name: string | undefined }> {
    const parts = rel.split('/').filter((p) => p && p !== '.');
    if (parts.includes('..')) throw new Error(`"${rel}" has a ".." component`);
    let dir = await Dir.open(root);
    const last = parts.pop();
    try {
      for (const [i, part] of parts.entries()) {
        const st = await dir.lstat(part);
        if (st.isSymbolicLink())
          throw new Error(
            `/${parts.slice(0, i + 1).join('/')} is a symlink in the container: not followed from the host`,
          );
        const next = await dir.openDir(part, st);
        await dir.close();
        dir = next;
      }
      return { dir, name: last };
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  get fd(): number {
    return this.handle.fd;
  }

  lstat(name: string): Promise<Stats> {
    return lstat(fdPath(this.fd, name)).catch(plain('lstat'));
  }

  /** Entry names, sorted for a reproducible archive order. */
  async names(): Promise<string[]> {
    return (await readdir(fdPath(this.fd)).catch(plain('readdir'))).sort();
  }

  /** Opens child directory `name` if it is still the directory `seen` describes. */
  async openDir(name: string, seen: Stats): Promise<Dir> {
    const handle = await open(fdPath(this.fd, name), O_PATH | O_DIRECTORY | O_NOFOLLOW).catch(plain('open'));
    try {
      const st = await handle.stat();
      if (!sameFile(seen, st)) throw new ChangedError(name, seen, st);
      return new Dir(handle, st, `${this.path}/${name}`);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Opens child `name` for reading if it is still the regular file `seen` describes. */
  async openFile(name: string, seen: Stats): Promise<FileHandle> {
    if (!seen.isFile()) throw new NotRegularError(name, seen);
    const pathHandle = await open(fdPath(this.fd, name), O_PATH | O_NOFOLLOW).catch(plain('open'));
    return reopenRegular(name, pathHandle, seen);
  }

  /** A symlink's target, if `name` is still the link `seen` describes after reading it. */
  async readlink(name: string, seen: Stats): Promise<string> {
    const target = await readlink(fdPath(this.fd, name)).catch(async (err: NodeJS.ErrnoException) => {
      // EINVAL: not a symlink any more.
      if (err.code === 'EINVAL') throw new ChangedError(name, seen, await this.lstat(name));
      return plain('readlink')(err);
    });
    const after = await this.lstat(name);
    if (!sameFile(seen, after)) throw new ChangedError(name, seen, after);
    return target;
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/**
 * Opens a /proc magic link (/proc/<pid>/exe, /proc/<pid>/fd/N) for reading. O_NOFOLLOW would
 * refuse the magic link itself, so O_PATH opens what it points to without opening it for I/O
 * (a FIFO the suspect holds does not block, a device is not touched), and only a regular file
 * (a deleted file, a memfd, a binary) is reopened for reading.
 */
export async function openProcLink(path: string): Promise<FileHandle> {
  const pathHandle = await open(path, O_PATH);
  let st: Stats;
  try {
    st = await pathHandle.stat();
  } catch (err) {
    await pathHandle.close();
    throw err;
  }
  return reopenRegular(path, pathHandle, st);
}

const CHUNK = 1024 * 1024;

/** What a capped copy read: counted in bytes actually read, never in the size seen at open. */
export interface CappedOutcome {
  bytes: number;
  /** There was more than the cap: only the first `cap` bytes were copied. */
  truncated: boolean;
  /** Why the copy stopped early (the deadline), if it did. */
  cut?: string;
}

/**
 * The first `cap` bytes of an open file as a stream, read a chunk at a time at explicit offsets.
 * The cap is checked against the bytes read so far, so a file that grows while it is copied (or
 * a sparse one of any apparent size) never yields more than `cap`; one more byte is probed at
 * the end to tell "exactly cap" from "truncated". `outcome` is final once the stream has ended.
 */
export function cappedStream(
  handle: FileHandle,
  cap: number,
  signal?: AbortSignal,
): { stream: AsyncGenerator<Buffer>; outcome: CappedOutcome } {
  const outcome: CappedOutcome = { bytes: 0, truncated: false };
  async function* generate(): AsyncGenerator<Buffer> {
    while (outcome.bytes < cap) {
      if (signal?.aborted) {
        outcome.cut = `deadline reached after ${outcome.bytes} bytes`;
        return;
      }
      const len = Math.min(CHUNK, cap - outcome.bytes);
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await handle.read(buf, 0, len, outcome.bytes);
      if (bytesRead === 0) return;
      outcome.bytes += bytesRead;
      yield bytesRead === len ? buf : buf.subarray(0, bytesRead);
    }
    const probe = await handle.read(Buffer.alloc(1), 0, 1, outcome.bytes);
    outcome.truncated = probe.bytesRead > 0;
  }
  return { stream: generate(), outcome };
}

/** A small file of the container (resolv.conf, hosts), read through the safe path, capped. */
export async function readContainedText(root: string, rel: string, cap: number): Promise<string> {
  const { dir, name } = await Dir.openContained(root, rel);
  try {
    if (name === undefined) throw new Error(`"${rel}" names no file`);
    const st = await dir.lstat(name);
    if (st.isSymbolicLink())
      throw new Error(`/${rel} is a symlink in the container: not followed from the host`);
    const handle = await dir.openFile(name, st);
    try {
      const { stream, outcome } = cappedStream(handle, cap);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c);
      if (outcome.truncated) throw new Error(`/${rel} is larger than ${cap} bytes: not read`);
      return Buffer.concat(chunks).toString('utf8');
    } finally {
      await handle.close();
    }
  } finally {
    await dir.close();
  }
}
