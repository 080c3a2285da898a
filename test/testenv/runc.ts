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
import { baseLayer } from './rootfs.js';

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
