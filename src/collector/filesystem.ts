import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { LayerLookup } from './overlay.js';
import { unescapeOctal } from './procfs.js';
import { Dir } from './safe-fs.js';
import { walkDir, type WalkEntry } from './tar.js';

const execFileP = promisify(execFile);

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
export async function opaqueDirs(
  upperHostPath: string,
  xattr: 'trusted.overlay.opaque' | 'user.overlay.opaque',
  signal?: AbortSignal,
  onIncomplete?: (why: string) => void,
): Promise<Set<string>> {
  const { stdout } = await execFileP(
    'getfattr',
    [
      '--recursive',
      '--physical',
      '--absolute-names',
      '--dump',
      `--match=^${xattr.replaceAll('.', '\\.')}$`,
      upperHostPath,
    ],
    { maxBuffer: 64 * 1024 * 1024, ...(signal && { signal }) },
  ).catch((err: NodeJS.ErrnoException & { stdout?: string; stderr?: string }) => {
    if (err.code === 'ENOENT')
      throw new Error('getfattr not installed (Debian package attr): opaque directories cannot be detected');
    // getfattr exits 1 when it could not read some file (the suspect may delete or rename them
    // while it walks) but still prints the rest: that output is kept, and said to be incomplete
    // with what getfattr reported. Output cut at maxBuffer is incomplete the same way.
    if (typeof err.stdout === 'string' && err.name !== 'AbortError') {
      const stderr = typeof err.stderr === 'string' ? err.stderr : '';
      const lines = stderr.split('\n').filter(Boolean);
      onIncomplete?.(
        lines.length > 0
          ? `getfattr could not read ${lines.length} path(s), the first: ${lines[0]!.slice(0, 300)}`
          : `getfattr stopped: ${err.message.slice(0, 300)}`,
      );
      return { stdout: err.stdout };
    }
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

/**
 * The writable layer against the image, as `docker diff` lists it. A whiteout (a 0:0 character
 * device in the upper dir) is a deletion; an entry also present in a lower layer is a change,
 * otherwise an addition. An opaque directory hides all the image's entries below it: those are
 * reported deleted unless the upper dir has them again.
 */
export async function overlayDiff(
  upper: Dir,
  lowers: LayerLookup[],
  opaque: Set<string>,
  onError: (path: string, err: unknown) => void,
  opts: { maxDepth?: number; maxEntries?: number; signal?: AbortSignal } = {},
): Promise<DiffEntry[]> {
  const out: DiffEntry[] = [];
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
    await diffEntry(out, e, lowers, opaque);
  }
  return out;
}

async function diffEntry(
  out: DiffEntry[],
  { parent, name, rel, st }: WalkEntry,
  lowers: LayerLookup[],
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
    let inImage = false;
    for (const l of lowers) if (!inImage) inImage = await l.has(rel);
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
      for (const lower of lowers) for (const n of await lower.names(rel)) hidden.add(n);
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
