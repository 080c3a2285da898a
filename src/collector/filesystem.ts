import { execFile } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { unescapeOctal, type MountInfo } from './procfs.js';
import { Dir } from './safe-fs.js';
import { walkDir, type WalkEntry } from './tar.js';

const execFileP = promisify(execFile);

export interface OverlayLayout {
  /** Host paths as the runtime mounted them (prefix hostRoot to read them). */
  upperDir: string;
  lowerDirs: string[];
  workDir?: string;
  mountId: number;
}

/** The container's root overlay mount from its init's mountinfo: `/` of type overlay. */
export function overlayLayout(mounts: MountInfo[]): OverlayLayout {
  const root = mounts.filter((m) => m.mountPoint === '/').at(-1);
  if (!root) throw new Error('no mount at / in the container mountinfo');
  if (root.fsType !== 'overlay')
    throw new Error(`the container root is ${root.fsType}, not overlay: no writable layer to diff`);
  const upperDir = root.superOptions.upperdir;
  if (!upperDir) throw new Error('the root overlay has no upperdir (read-only root): nothing was written');
  // lowerdir is ':'-separated; a literal ':' in a layer path is escaped as '\:'.
  const lowerDirs = (root.superOptions.lowerdir ?? '')
    .split(/(?<!\\):/)
    .filter(Boolean)
    .map((p) => p.replace(/\\:/g, ':'));
  return { upperDir, lowerDirs, workDir: root.superOptions.workdir, mountId: root.id };
}

export interface DiffEntry {
  /** Like `docker diff`: A added, C changed, D deleted. */
  kind: 'A' | 'C' | 'D';
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size?: number;
  mtime?: string;
  /** A directory recreated over an image directory: nothing of the image's version shows through. */
  opaque?: boolean;
}

/**
 * Directories of the writable layer marked opaque (trusted.overlay.opaque=y, or user.overlay.opaque
 * for userxattr mounts). Node has no xattr API, so getfattr (Debian's attr package) dumps them
 * all in one pass.
 */
export async function opaqueDirs(upperHostPath: string, signal?: AbortSignal): Promise<Set<string>> {
  const { stdout } = await execFileP(
    'getfattr',
    [
      '--recursive',
      '--physical',
      '--absolute-names',
      '--dump',
      '--match=^(trusted|user)\\.overlay\\.opaque$',
      upperHostPath,
    ],
    { maxBuffer: 64 * 1024 * 1024, ...(signal && { signal }) },
  ).catch((err: NodeJS.ErrnoException & { stdout?: string }) => {
    if (err.code === 'ENOENT')
      throw new Error('getfattr not installed (Debian package attr): opaque directories cannot be detected');
    // getfattr exits 1 when some file had no attributes to show but still printed the rest.
    if (typeof err.stdout === 'string') return { stdout: err.stdout };
    throw err;
  });
  const out = new Set<string>();
  let file: string | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) file = unescapeOctal(line.slice(8));
    else if (file && /overlay\.opaque="y"/.test(line)) {
      const rel = file.slice(upperHostPath.length).replace(/^\/+/, '');
      out.add(rel);
    }
  }
  return out;
}

async function existsIn(dirs: string[], rel: string): Promise<boolean> {
  for (const d of dirs) {
    if (
      await lstat(join(d, rel)).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
}

/**
 * The writable layer against the image, as `docker diff` lists it. A whiteout (a 0:0 character
 * device in the upper dir) is a deletion; an entry also present in a lower layer is a change,
 * otherwise an addition. An opaque directory hides all the image's entries below it: those are
 * reported deleted unless the upper dir has them again.
 */
export async function overlayDiff(
  upperHostPath: string,
  lowerHostPaths: string[],
  opaque: Set<string>,
  onError: (path: string, err: unknown) => void,
  opts: { maxDepth?: number; maxEntries?: number; signal?: AbortSignal } = {},
): Promise<DiffEntry[]> {
  const out: DiffEntry[] = [];
  const upper = await Dir.open(upperHostPath);
  try {
    for await (const e of walkDir(upper, (p, err) => onError(`/${p}`, err), opts)) {
      const { rel } = e;
      if (!rel) continue;
      if (out.length >= (opts.maxEntries ?? Infinity)) {
        onError(
          `/${rel}`,
          new Error(`the diff's cap of ${opts.maxEntries} entries is reached: the rest is not listed`),
        );
        break;
      }
      if (opts.signal?.aborted) {
        onError(`/${rel}`, new Error(`deadline reached after ${out.length} entries: the rest is not listed`));
        break;
      }
      await diffEntry(out, e, lowerHostPaths, opaque);
    }
  } finally {
    await upper.close();
  }
  return out;
}

async function diffEntry(
  out: DiffEntry[],
  { parent, name, rel, st }: WalkEntry,
  lowerHostPaths: string[],
  opaque: Set<string>,
): Promise<void> {
  {
    const path = `/${rel}`;
    if (st.isCharacterDevice() && st.rdev === 0) {
      out.push({ kind: 'D', path, type: 'other' });
      return;
    }
    const type = st.isDirectory()
      ? 'directory'
      : st.isSymbolicLink()
        ? 'symlink'
        : st.isFile()
          ? 'file'
          : 'other';
    const inImage = await existsIn(lowerHostPaths, rel);
    const entry: DiffEntry = {
      kind: inImage ? 'C' : 'A',
      path,
      type,
      mtime: st.mtime.toISOString(),
      ...(type === 'file' && { size: st.size }),
    };
    if (opaque.has(rel)) {
      entry.opaque = true;
      const hidden = new Set<string>();
      for (const lower of lowerHostPaths) {
        for (const n of await readdir(join(lower, rel)).catch(() => [] as string[])) hidden.add(n);
      }
      // Listed through the walk's own descriptor: a directory swapped for a symlink lists nothing of the host.
      const present = new Set<string>();
      if (parent && name !== undefined) {
        const d = await parent.openDir(name, st).catch(() => undefined);
        for (const n of (await d?.names().catch(() => [])) ?? []) present.add(n);
        await d?.close();
      }
      out.push(entry);
      for (const n of [...hidden].sort())
        if (!present.has(n)) out.push({ kind: 'D', path: `${path}/${n}`, type: 'other' });
      return;
    }
    out.push(entry);
  }
}

/** Paths an intruder typically leaves things in, read through /proc/<pid>/root. */
export const targetedPaths = [
  '/tmp',
  '/var/tmp',
  '/dev/shm',
  '/root/.ash_history',
  '/root/.bash_history',
  '/root/.zsh_history',
  '/root/.sh_history',
  '/root/.python_history',
  '/root/.ssh',
  '/etc/crontab',
  '/etc/cron.d',
  '/etc/cron.hourly',
  '/etc/cron.daily',
  '/var/spool/cron',
  '/etc/ld.so.preload',
];

/** Shell histories and SSH keys of every home directory (/home/*). */
export async function homeTargets(rootPath: string): Promise<string[]> {
  const root = await Dir.open(rootPath);
  let homes: string[];
  try {
    const st = await root.lstat('home').catch(() => undefined);
    if (!st) return [];
    // Listing through a planted symlink would list a directory of the host instead.
    if (st.isSymbolicLink())
      throw new Error('/home is a symlink in the container: not followed from the host');
    if (!st.isDirectory()) return [];
    const home = await root.openDir('home', st);
    try {
      homes = await home.names();
    } finally {
      await home.close();
    }
  } finally {
    await root.close();
  }
  const files = ['.ash_history', '.bash_history', '.zsh_history', '.sh_history', '.python_history', '.ssh'];
  return homes.sort().flatMap((h) => files.map((f) => `/home/${h}/${f}`));
}
