/**
 * Which host directories are the container's image layers and writable layer (ADR 0017).
 *
 * The container's own /proc/<pid>/mountinfo is the suspect's to write: its init can unshare a
 * user and mount namespace and mount an overlay on `/` whose upperdir string names any host
 * path (another container's snapshot, say), and a collector that believed it would archive that
 * host directory as the suspect's writable layer. So the layout is read from the host's mount
 * table (a process in the host's mount namespace), at the mount point the runtime's own state
 * names for this container's rootfs, and every layer must lie below a configured snapshotter
 * root. The layers are then opened one component at a time (safe-fs), never following a link.
 *
 *   gather: runtime state -> rootfs path; host mountinfo text
 *   plan:   planLayout(text, rootfs, roots) -> layout or refusal   (pure, table-tested)
 *   apply:  openLayer(...) for the upper dir and each lower dir
 */
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { parseMountinfo, unescapeOctal, type MountInfo } from './procfs.js';
import { Dir } from './safe-fs.js';

/**
 * Where the stock overlay snapshotters keep layers (host paths). A layer anywhere else is
 * refused, so a wrong answer from the mount table cannot name an arbitrary host directory.
 */
export const defaultSnapshotterRoots = [
  // containerd's overlayfs snapshotter (and so k3s, kind, EKS, GKE, AKS).
  '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots',
  // CRI-O and podman (containers/storage).
  '/var/lib/containers/storage/overlay',
  // Docker's overlay2 driver.
  '/var/lib/docker/overlay2',
];

export interface OverlayLayout {
  /** Host paths exactly as the runtime mounted them (prefix hostRoot to reach them). */
  upperDir: string;
  workDir?: string;
  /** The layers the merged view shows, top first. */
  lowerDirs: string[];
  /** Data-only layers ("::" or datadir+): reached only through metacopy redirects, never listed. */
  dataDirs: string[];
  /** The host mount point: the runtime's rootfs for this container. */
  mountPoint: string;
  mountId: number;
  /** major:minor of the overlay: the device /proc/<pid>/root of the container shows. */
  device: string;
  /**
   * The mount named its lower layers relative to the mounter's working directory (containerd
   * does so when absolute paths would overflow the mount data page) and they were taken as
   * relative to the root the upperdir lies in, where containerd puts them.
   */
  lowerDirsRelativeTo?: string;
  /**
   * Where the overlay reads its opaque marker: `user.overlay.opaque` with the `userxattr`
   * option (rootless), else `trusted.overlay.opaque`. Only that one counts: a process in the
   * container may set `user.*` attributes on its own files, never `trusted.*`.
   */
  opaqueXattr: 'trusted.overlay.opaque' | 'user.overlay.opaque';
}

export type LayoutPlan = { layout: OverlayLayout } | { refused: string };

/** One line of mountinfo with its super options in order (lowerdir+ and datadir+ repeat). */
interface MountLine {
  mount: MountInfo;
  options: [key: string, value: string][];
}

function mountLines(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const [mount] = parseMountinfo(line);
    if (!mount) continue;
    const raw = line.slice(line.indexOf(' - ') + 3).split(' ')[2] ?? '';
    const options = raw
      .split(',')
      .filter(Boolean)
      .map((o): [string, string] => {
        const eq = o.indexOf('=');
        return eq < 0
          ? [unescapeOctal(o), '']
          : [unescapeOctal(o.slice(0, eq)), unescapeOctal(o.slice(eq + 1))];
      });
    out.push({ mount, options });
  }
  return out;
}

/**
 * overlayfs keeps a path as the mounter wrote it, with its own backslash escapes (`\:` in a
 * lowerdir, `\,` anywhere); the path on disk has the escaped character itself.
 */
const unescapeOverlay = (s: string): string => s.replace(/\\(.)/g, '$1');

/** Splits on `sep` where it is not escaped with a backslash. */
function splitUnescaped(s: string, sep: ':' | '::'): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string;
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + (s[i + 1] as string);
      i++;
    } else if (s.startsWith(sep, i)) {
      out.push(cur);
      cur = '';
      i += sep.length - 1;
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Lower layers of an overlay's options. The legacy form is one `lowerdir=a:b::data1::data2`
 * (after "::" come data-only layers); the kernel's newer form (6.7+, the fsconfig API) is one
 * `lowerdir+=` per layer then one `datadir+=` per data-only layer.
 */
export function lowerLayers(options: [string, string][]): { lowerDirs: string[]; dataDirs: string[] } {
  const legacy = options.find(([k]) => k === 'lowerdir')?.[1];
  if (legacy !== undefined) {
    const [merged = '', ...data] = splitUnescaped(legacy, '::');
    return {
      lowerDirs: splitUnescaped(merged, ':').filter(Boolean).map(unescapeOverlay),
      dataDirs: data.filter(Boolean).map(unescapeOverlay),
    };
  }
  // One path per option: the kernel takes these verbatim (ovl_mount_dir_noesc), no escapes to undo.
  return {
    lowerDirs: options.filter(([k]) => k === 'lowerdir+').map(([, v]) => v),
    dataDirs: options.filter(([k]) => k === 'datadir+').map(([, v]) => v),
  };
}

/**
 * `path` relative to the first root it lies strictly below, or why not. Judged on the string: a
 * `.` or `..` component or an empty one is refused rather than normalised (the kernel resolved
 * them against symlinks we would not see); symlinks are refused later, when the layer is opened.
 */
export function underRoot(
  path: string,
  roots: string[],
): { root: string; rel: string } | { refused: string } {
  if (!path.startsWith('/')) return { refused: `"${path}" is not an absolute path` };
  const parts = path.slice(1).split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..'))
    return { refused: `"${path}" has an empty, "." or ".." component` };
  for (const r of roots) {
    const root = posix.normalize(r).replace(/\/+$/, '');
    if (path.startsWith(`${root}/`)) return { root: root || '/', rel: path.slice(root.length + 1) };
  }
  return { refused: `"${path}" is outside the snapshotter roots (${roots.join(', ') || 'none configured'})` };
}

/**
 * Which host mount is the container's root. By preference the mount point the runtime's state
 * names (`rootfs`). When no state names one (a container found by its cgroup), the device of
 * the container's root directory as the host sees it (stat of /proc/<pid>/root): the suspect
 * can chroot elsewhere, but only into a mount of its own namespace, and an overlay it mounted
 * there is not in the host's table, so at worst this refuses.
 */
export type RootfsKey = { rootfs: string } | { device: string };

const keyText = (at: RootfsKey): string =>
  'rootfs' in at ? `the runtime's rootfs ${at.rootfs}` : `the container root's device ${at.device}`;

/**
 * The container's overlay as the host mounted it: the topmost overlay at the runtime's rootfs
 * (or with the root's device) in the host's mountinfo, and every layer of it inside a snapshotter
 * root. Pure.
 */
export function planLayout(hostMountinfo: string, at: RootfsKey, roots: string[]): LayoutPlan {
  const mounts = mountLines(hostMountinfo).filter((l) =>
    'rootfs' in at
      ? l.mount.mountPoint === at.rootfs
      : l.mount.device === at.device && l.mount.fsType === 'overlay',
  );
  // The last line at a mount point is the one on top: what the runtime's pivot_root saw.
  const top = mounts.at(-1);
  if (!top) return { refused: `nothing is mounted at ${keyText(at)} in the host's mount table` };
  const { mount, options } = top;
  const rootfs = mount.mountPoint;
  if (mount.fsType !== 'overlay')
    return { refused: `the rootfs ${rootfs} is ${mount.fsType}, not overlay: no writable layer to diff` };
  const get = (k: string) => options.find(([key]) => key === k)?.[1];
  const upper = get('upperdir');
  if (upper === undefined)
    return { refused: `the overlay at ${rootfs} has no upperdir (read-only root): nothing was written` };
  const work = get('workdir');
  const layout: OverlayLayout = {
    upperDir: unescapeOverlay(upper),
    ...(work !== undefined && { workDir: unescapeOverlay(work) }),
    ...lowerLayers(options),
    mountPoint: rootfs,
    mountId: mount.id,
    device: mount.device,
    opaqueXattr: options.some(([k]) => k === 'userxattr') ? 'user.overlay.opaque' : 'trusted.overlay.opaque',
  };
  const upperRoot = underRoot(layout.upperDir, roots);
  if ('root' in upperRoot && layout.lowerDirs.some((l) => !l.startsWith('/'))) {
    // Only bare relative names are resolved; "..", "." and empty components are refused below.
    layout.lowerDirs = layout.lowerDirs.map((l) => (l.startsWith('/') ? l : `${upperRoot.root}/${l}`));
    layout.lowerDirsRelativeTo = upperRoot.root;
  }
  const named: [string, string][] = [
    ['upperdir', layout.upperDir],
    ...(layout.workDir !== undefined ? [['workdir', layout.workDir] as [string, string]] : []),
    ...layout.lowerDirs.map((l): [string, string] => ['lowerdir', l]),
    ...layout.dataDirs.map((l): [string, string] => ['data-only lowerdir', l]),
  ];
  for (const [what, path] of named) {
    const r = underRoot(path, roots);
    if ('refused' in r) return { refused: `${what} ${r.refused}: not read` };
  }
  return { layout };
}

/**
 * The root overlay the container's own mountinfo claims, for the record only: when it names
 * other directories than the host's table, the suspect has mounted over its root.
 */
export function claimedLayout(
  containerMounts: MountInfo[],
): { upperDir?: string; lowerdir?: string } | undefined {
  const root = containerMounts.filter((m) => m.mountPoint === '/').at(-1);
  if (root?.fsType !== 'overlay') return undefined;
  return { upperDir: root.superOptions.upperdir, lowerdir: root.superOptions.lowerdir };
}

/**
 * Opens layer directory `path` (a host path below one of `roots`) as a descriptor, one
 * component at a time below the root: a symlink anywhere on the way, or the layer itself being
 * one, is refused instead of followed.
 */
export async function openLayer(hostRoot: string, roots: string[], path: string): Promise<Dir> {
  const r = underRoot(path, roots);
  if ('refused' in r) throw new Error(`${r.refused}: not read`);
  const { dir, name } = await Dir.openContained(join(hostRoot, r.root), r.rel);
  try {
    if (name === undefined) throw new Error(`"${path}" names no directory below ${r.root}`);
    const st = await dir.lstat(name);
    if (!st.isDirectory())
      throw new Error(
        `${path} is a ${st.isSymbolicLink() ? 'symlink' : 'non-directory'}: not a layer, not read`,
      );
    return await dir.openDir(name, st);
  } finally {
    await dir.close();
  }
}

/**
 * Looks paths up in an image layer through descriptors, as overlayfs itself does: a symlink in
 * the layer is an entry, never a way into another directory (an absolute one would resolve on
 * the host). Lookups come in the diff's depth-first order, so the chain of directories opened
 * for the last path is kept and only the part that differs is reopened.
 */
export class LayerLookup {
  /** chain[i] is the directory at the first i components of the last path looked up. */
  private readonly chain: { name: string; dir: Dir }[] = [];

  constructor(private readonly top: Dir) {}

  /** Whether `rel` exists in the layer (as anything: a whiteout or a symlink counts). */
  async has(rel: string): Promise<boolean> {
    const parts = rel.split('/');
    const last = parts.pop() as string;
    const dir = await this.dirAt(parts);
    if (!dir) return false;
    return dir.lstat(last).then(
      () => true,
      () => false,
    );
  }

  /** Names in directory `rel` of the layer; none when it is not a directory there. */
  async names(rel: string): Promise<string[]> {
    const dir = await this.dirAt(rel.split('/').filter(Boolean));
    return dir ? dir.names().catch(() => []) : [];
  }

  private async dirAt(parts: string[]): Promise<Dir | undefined> {
    let keep = 0;
    while (keep < this.chain.length && keep < parts.length && this.chain[keep]?.name === parts[keep]) keep++;
    for (const { dir } of this.chain.splice(keep)) await dir.close();
    let dir = this.chain.at(-1)?.dir ?? this.top;
    for (const name of parts.slice(keep)) {
      const st: Stats | undefined = await dir.lstat(name).catch(() => undefined);
      // A non-directory here hides everything below it in this layer, symlinks included.
      if (!st?.isDirectory()) return undefined;
      const next = await dir.openDir(name, st).catch(() => undefined);
      if (!next) return undefined;
      this.chain.push({ name, dir: next });
      dir = next;
    }
    return dir;
  }

  async close(): Promise<void> {
    for (const { dir } of this.chain.splice(0)) await dir.close();
    await this.top.close();
  }
}
