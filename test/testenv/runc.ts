import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeCapabilities } from '../../src/collector/procfs.js';
import { RUN_ENV } from './procs.js';
import { baseLayer, staticProgram } from './rootfs.js';

export interface ContainerOptions {
  /** argv of the container's init process (a busybox userland: /bin/sh -c '...' works). */
  command: string[];
  /** Defaults to 64 random hex digits, the shape of a containerd/CRI-O/Docker container ID. */
  id?: string;
  /** Files of the container's image (a read-only layer above busybox), path -> content. */
  files?: Record<string, string | Buffer>;
  /** Host executables copied into the image layer, path in the image -> host path. */
  executables?: Record<string, string>;
  /** Share the host's network namespace (like hostNetwork: true), so it can reach 127.0.0.1 listeners. */
  hostNetwork?: boolean;
  /** Extra environment, KEY=value. */
  env?: string[];
  /** Host paths bind-mounted into the container. */
  binds?: { source: string; destination: string; readonly?: boolean }[];
  /** Every capability the host allows (like privileged: true) instead of runc's three defaults. */
  allCapabilities?: boolean;
  /** Capabilities added to runc's three defaults, e.g. one of containerd's default set. */
  addCapabilities?: string[];
}

export interface TestContainer {
  id: string;
  /** Host PID of the container's init process. */
  pid: number;
  bundle: string;
  /** The merged overlay root (bundle/rootfs), mounted on the host. */
  rootfs: string;
  upperDir: string;
  /** The image layers, top first, as overlayfs takes them. */
  lowerDir: string;
  /** The runc state directory (`runc --root`) of this container. */
  stateRoot: string;
  /** Where its layers lie, as the collector's snapshotter roots: its own directory and the base layer's parent. */
  layerRoots: string[];
  stdoutFile: string;
  /** Resolves once `path` (inside the container) exists, e.g. a marker its script touches when ready. */
  waitForFile(path: string, timeoutMs?: number): Promise<void>;
  /** Kills and deletes the container, unmounts and removes its directories. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<() => void>();
const cleanupAll = (): void => {
  for (const cleanup of live) cleanup();
};
process.once('exit', cleanupAll);
// An interrupted test run must not leave containers and overlay mounts behind either.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

/**
 * Every capability this test process may hand out (its bounding set): a sandboxed test machine
 * may lack some, and runc fails to start a container asking for more.
 */
function allCapabilities(): string[] {
  const bnd = /^CapBnd:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return decodeCapabilities(bnd);
}

/**
 * Starts a real runc container on an overlayfs root: busybox base layer (cached) + an image
 * layer with `files` + a fresh writable upper directory, the layout containerd and CRI-O give a
 * Kubernetes container. Each call gets its own ID, directories and runc state root; everything
 * is removed by stop(), and by an exit hook if a test never got to call it.
 */
export async function startContainer(opts: ContainerOptions): Promise<TestContainer> {
  const id = opts.id ?? randomBytes(32).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'amber-runc-'));
  const bundle = join(dir, 'bundle');
  const rootfs = join(bundle, 'rootfs');
  const image = join(dir, 'image');
  const upperDir = join(dir, 'upper');
  const workDir = join(dir, 'work');
  const stateRoot = join(dir, 'state');
  for (const d of [rootfs, image, upperDir, workDir, stateRoot]) mkdirSync(d, { recursive: true });

  for (const [path, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(dirname(join(image, path)), { recursive: true });
    writeFileSync(join(image, path), content);
  }
  for (const [path, hostPath] of Object.entries(opts.executables ?? {})) {
    mkdirSync(dirname(join(image, path)), { recursive: true });
    copyFileSync(hostPath, join(image, path));
    chmodSync(join(image, path), 0o755);
  }
  const lowerDir = `${image}:${baseLayer()}`;

  let mounted = false;
  let created = false;
  const cleanup = (): void => {
    live.delete(cleanup);
    if (created) {
      quietly('runc', ['--root', stateRoot, 'kill', id, 'KILL']);
      quietly('runc', ['--root', stateRoot, 'delete', '--force', id]);
    }
    if (mounted && !quietly('umount', [rootfs])) quietly('umount', ['-l', rootfs]);
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(cleanup);

  try {
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lowerDir},upperdir=${upperDir},workdir=${workDir}`,
      rootfs,
    ]);
    mounted = true;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(runtimeSpec(bundle, opts), null, 2));

    const stdoutFile = join(dir, 'stdout.log');
    const out = openSync(stdoutFile, 'a');
    try {
      // Detached, no terminal: runc hands these descriptors to the container's init.
      execFileSync('runc', ['--root', stateRoot, 'run', '--detach', '--bundle', bundle, id], {
        stdio: ['ignore', out, out],
        timeout: 30_000,
      });
      created = true;
    } catch (err) {
      created = true; // a half-created container may exist; delete --force covers it
      throw new Error(`runc run failed: ${(err as Error).message}\n${readFileSync(stdoutFile, 'utf8')}`);
    } finally {
      closeSync(out);
    }
    const state = JSON.parse(
      execFileSync('runc', ['--root', stateRoot, 'state', id], { encoding: 'utf8' }),
    ) as { pid: number };

    return {
      id,
      pid: state.pid,
      bundle,
      rootfs,
      upperDir,
      lowerDir,
      stateRoot,
      layerRoots: [dir, dirname(baseLayer())],
      stdoutFile,
      async waitForFile(path, timeoutMs = 20_000) {
        const deadline = Date.now() + timeoutMs;
        while (!existsSync(join(rootfs, path))) {
          if (Date.now() > deadline) {
            throw new Error(
              `container ${id.slice(0, 12)}: ${path} did not appear in ${timeoutMs} ms; output:\n${readFileSync(stdoutFile, 'utf8')}`,
            );
          }
          await sleep(50);
        }
      },
      async stop() {
        cleanup();
      },
    };
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** `runc spec`'s default, edited the way a CRI runtime would for a non-interactive container. */
function runtimeSpec(bundle: string, opts: ContainerOptions): Record<string, unknown> {
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as OciSpec;
  spec.process.terminal = false;
  spec.process.args = opts.command;
  spec.process.env.push(...(opts.env ?? []));
  // The container's processes do not inherit this process's environment: tag them for the
  // suite's leftover check (global-setup.ts) like every other program it starts.
  if (process.env[RUN_ENV]) spec.process.env.push(`${RUN_ENV}=${process.env[RUN_ENV]}`);
  spec.root.readonly = false;
  spec.hostname = 'amber-test';
  if (opts.allCapabilities) {
    for (const set of ['bounding', 'effective', 'permitted'] as const)
      spec.process.capabilities[set] = allCapabilities();
    spec.process.capabilities.ambient = [];
  }
  for (const cap of opts.addCapabilities ?? [])
    for (const set of ['bounding', 'effective', 'permitted'] as const)
      spec.process.capabilities[set].push(cap);
  if (opts.hostNetwork) spec.linux.namespaces = spec.linux.namespaces.filter((ns) => ns.type !== 'network');
  for (const b of opts.binds ?? []) {
    spec.mounts.push({
      destination: b.destination,
      type: 'bind',
      source: b.source,
      options: ['rbind', b.readonly ? 'ro' : 'rw'],
    });
  }
  return spec as unknown as Record<string, unknown>;
}

interface OciSpec {
  process: {
    terminal: boolean;
    args: string[];
    env: string[];
    capabilities: Record<'bounding' | 'effective' | 'permitted' | 'ambient', string[]>;
  };
  root: { readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: { namespaces: { type: string }[] };
}

function quietly(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Attackers for the collector's tests: static programs (the test image has no libc) that keep
 * changing the container's file system while the collector reads it from the host.
 */

/**
 * `swapper <hostDir> <n>`: for i < n keeps exchanging, atomically (renameat2 RENAME_EXCHANGE),
 * /tmp/race/f<i> (a regular file of the container) with a symlink to <hostDir>/secret, and
 * /tmp/race/d<i> (a directory of the container holding a file `secret`) with a symlink to
 * <hostDir>; and creates and removes symlinks under /tmp/vanish. A collector that follows any
 * of them, or reads the file a name pointed to after its check, archives the host's bytes.
 * Touches /ready once everything exists, then swaps until killed.
 */
export function swapperBinary(): string {
  return staticProgram(
    'swapper',
    `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RENAME_EXCHANGE (1 << 1)

static void put(const char *path, const char *text) {
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) exit(2);
  close(fd);
}

static void xchg(const char *a, const char *b) {
  if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0) {
    perror("renameat2");
    exit(3);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) return 1;
  int n = atoi(argv[2]);
  char a[256], b[256], target[4096];
  mkdir("/tmp/race", 0755);
  mkdir("/tmp/vanish", 0755);
  snprintf(target, sizeof target, "%s/secret", argv[1]);
  for (int i = 0; i < n; i++) {
    snprintf(a, sizeof a, "/tmp/race/f%d", i);
    put(a, "container file\\n");
    snprintf(b, sizeof b, "/tmp/race/.f%d", i);
    if (symlink(target, b) != 0) return 4;
    snprintf(a, sizeof a, "/tmp/race/d%d", i);
    mkdir(a, 0755);
    snprintf(a, sizeof a, "/tmp/race/d%d/secret", i);
    put(a, "container dir file\\n");
    snprintf(b, sizeof b, "/tmp/race/.d%d", i);
    if (symlink(argv[1], b) != 0) return 4;
  }
  put("/ready", "");
  for (unsigned long round = 0;; round++) {
    for (int i = 0; i < n; i++) {
      snprintf(a, sizeof a, "/tmp/race/f%d", i);
      snprintf(b, sizeof b, "/tmp/race/.f%d", i);
      xchg(a, b);
      snprintf(a, sizeof a, "/tmp/race/d%d", i);
      snprintf(b, sizeof b, "/tmp/race/.d%d", i);
      xchg(a, b);
      snprintf(a, sizeof a, "/tmp/vanish/l%d", i);
      symlink(target, a);
      unlink(a);
    }
  }
}
`,
  );
}

/**
 * `hostile <wide>`: plants what must never hang, fool or overflow the collector, then touches
 * /ready and keeps growing a file. FIFOs held read-only and read-write, present and deleted
 * (/tmp/fifo-{ro,rw}, deleted ones held on descriptors); a character device present
 * (/tmp/dev-zero, 1:5) and one deleted but held; a listening unix socket (/tmp/sock); a 64 GiB
 * sparse file present (/tmp/sparse) and one deleted but held; a tree 300 directories deep
 * (/tmp/deep) and one <wide> files wide (/tmp/wide); and a deleted file and /tmp/grow, both
 * appended to without end (reset at 64 MiB), so they grow while the collector reads them.
 * Needs CAP_MKNOD (allCapabilities).
 */
export function hostileBinary(): string {
  return staticProgram(
    'hostile',
    `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

static int must(int v, const char *what) {
  if (v < 0) { perror(what); exit(2); }
  return v;
}

int main(int argc, char **argv) {
  int wide = argc > 1 ? atoi(argv[1]) : 1000;
  must(mkfifo("/tmp/fifo-ro", 0644), "mkfifo");
  must(open("/tmp/fifo-ro", O_RDONLY | O_NONBLOCK), "fifo-ro");
  must(mkfifo("/tmp/fifo-rw", 0644), "mkfifo");
  must(open("/tmp/fifo-rw", O_RDWR), "fifo-rw");
  must(mkfifo("/tmp/fifo-del-ro", 0644), "mkfifo");
  must(open("/tmp/fifo-del-ro", O_RDONLY | O_NONBLOCK), "fifo-del-ro");
  unlink("/tmp/fifo-del-ro");
  must(mkfifo("/tmp/fifo-del-rw", 0644), "mkfifo");
  must(open("/tmp/fifo-del-rw", O_RDWR), "fifo-del-rw");
  unlink("/tmp/fifo-del-rw");

  must(mknod("/tmp/dev-zero", S_IFCHR | 0666, makedev(1, 5)), "mknod");
  must(mknod("/tmp/dev-del", S_IFCHR | 0666, makedev(1, 5)), "mknod");
  must(open("/tmp/dev-del", O_RDONLY), "dev-del");
  unlink("/tmp/dev-del");

  int s = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, "/tmp/sock");
  must(bind(s, (struct sockaddr *)&addr, sizeof addr), "bind");
  must(listen(s, 1), "listen");

  int sp = must(open("/tmp/sparse", O_CREAT | O_RDWR, 0644), "sparse");
  must(ftruncate(sp, 64LL << 30), "ftruncate");
  int sd = must(open("/tmp/sparse-del", O_CREAT | O_RDWR, 0644), "sparse-del");
  must(ftruncate(sd, 64LL << 30), "ftruncate");
  unlink("/tmp/sparse-del");

  must(mkdir("/tmp/deep", 0755), "mkdir");
  must(chdir("/tmp/deep"), "chdir");
  for (int i = 0; i < 300; i++) {
    must(mkdir("d", 0755), "mkdir deep");
    must(chdir("d"), "chdir deep");
  }
  int leaf = must(open("leaf", O_CREAT | O_WRONLY, 0644), "leaf");
  close(leaf);

  char name[64];
  must(mkdir("/tmp/wide", 0755), "mkdir");
  for (int i = 0; i < wide; i++) {
    snprintf(name, sizeof name, "/tmp/wide/f%06d", i);
    close(must(open(name, O_CREAT | O_WRONLY, 0644), "wide"));
  }

  static char chunk[65536];
  memset(chunk, 'G', sizeof chunk);
  int gd = must(open("/tmp/grow-del", O_CREAT | O_RDWR, 0644), "grow-del");
  unlink("/tmp/grow-del");
  int gp = must(open("/tmp/grow", O_CREAT | O_RDWR, 0644), "grow");
  must(write(gd, chunk, sizeof chunk), "write");
  must(write(gp, chunk, sizeof chunk), "write");
  close(must(open("/ready", O_CREAT | O_WRONLY, 0644), "ready"));
  for (long n = 0;; n++) {
    if (lseek(gd, 0, SEEK_END) >= (64L << 20)) {
      must(ftruncate(gd, 0), "truncate");
      must(ftruncate(gp, 0), "truncate");
      lseek(gd, 0, SEEK_SET);
      lseek(gp, 0, SEEK_SET);
    }
    must(write(gd, chunk, sizeof chunk), "write");
    must(write(gp, chunk, sizeof chunk), "write");
    usleep(500);
  }
}
`,
  );
}
