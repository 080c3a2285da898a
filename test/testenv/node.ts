import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Node } from '@kubernetes/client-node';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cacheDir, versions } from './binaries.js';
import type { Cluster } from './kube.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';

/**
 * A real node next to a test control plane (docs/adr/0012-real-node.md): containerd 2.x with
 * runc, bridge CNI, a kubelet registered against the test API server, and kube-router enforcing
 * NetworkPolicy. It changes the machine (iptables, the cni0 bridge, kubepods cgroups), so there
 * is one per machine: a lock on a fixed path is held for the node's life, and everything it made
 * is removed when it stops, when the test process exits, and before the next node starts.
 */

export const NODE_NAME = 'amber-node';
export const POD_CIDR = '10.244.0.0/24';
/** Fixed, so that a crashed run's leftovers are found and removed by the next run. */
const BASE = '/tmp/amber-node';
/** Where the node's containerd keeps image and writable layers (`root` in its config): the collector's snapshotter root. */
/** The test kubelet's podLogsDir: the collector is told (it is not /var/log/pods). */
export const NODE_POD_LOGS = join(BASE, 'pod-logs');
export const NODE_SNAPSHOTS = join(BASE, 'containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots');
const LOCK = '/tmp/amber-real-node.lock';
const CLEANUP = join(import.meta.dirname, 'node-cleanup.sh');
const REPO = join(import.meta.dirname, '..', '..');

/** Versions must match scripts/testenv-build.sh (which reads the same variables). */
const nodeVersions = {
  kubelet: versions.kube,
  criu: process.env.CRIU_VERSION ?? '4.2.1-1',
  containerd: process.env.CONTAINERD_VERSION ?? 'v2.4.2',
  'kube-router': process.env.KUBE_ROUTER_VERSION ?? 'v2.1.0',
};
const bin = (component: keyof typeof nodeVersions, name: string = component): string =>
  join(cacheDir, `${component}-${nodeVersions[component]}`, name);

/** The runtime's BinaryName: runc with the CRIU this node checkpoints with (setCriu). */
const RUNC_WRAPPER = join(BASE, 'runc-criu');
/** On containerd's PATH: its CRI looks `criu` up there before it asks runc to checkpoint. */
const CRIU_BIN = join(BASE, 'bin');
/** CRIU from the cache (scripts/testenv-build.sh node), or undefined when it was not built. */
export function cachedCriu(): string | undefined {
  const p = bin('criu');
  return existsSync(p) ? p : undefined;
}

const hostPrograms = ['iptables', 'iptables-save', 'ipset', 'conntrack', 'buildah', 'runc', 'flock'];

/**
 * Why a real node cannot start on this machine, or undefined when it can: the node tests skip
 * with this reason (printed) instead of failing where the node's components were never built.
 */
export function nodeUnavailable(): string | undefined {
  const missing = [
    ...[
      bin('kubelet'),
      bin('kubelet', 'kubectl'),
      bin('containerd'),
      bin('containerd', 'containerd-shim-runc-v2'),
      bin('containerd', 'ctr'),
      bin('kube-router'),
      '/usr/lib/cni/bridge',
    ].filter((p) => !existsSync(p)),
    ...hostPrograms.filter((p) => !onPath(p)),
  ];
  if (process.getuid?.() !== 0) return 'a real node needs root';
  if (missing.length)
    return `real node components missing (${missing.join(', ')}); run: bash scripts/testenv-build.sh node`;
  return undefined;
}

function onPath(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface Image {
  name: string;
  archive: string;
  ref: string;
}

/**
 * Builds (or finds in the cache) images with scripts/build-images.sh: `base`, `amber`,
 * `busybox`, `pause`. The first amber build takes minutes; later ones are a cache lookup.
 */
export function buildImages(...names: string[]): Record<string, Image> {
  const out = execFileSync('bash', [join(REPO, 'scripts', 'build-images.sh'), ...names], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  const images: Record<string, Image> = {};
  for (const line of out.trim().split('\n')) {
    const [name, archive, ref] = line.split(' ');
    if (name && archive && ref) images[name] = { name, archive, ref };
  }
  return images;
}

/** Milliseconds from the lock being held to each step of a cold start. */
export interface NodeStartTimes {
  lockWaitMs: number;
  cleanupMs: number;
  containerdReadyMs: number;
  imagesImportedMs: number;
  nodeRegisteredMs: number;
  nodeReadyMs: number;
  firewallReadyMs: number;
}

export class RealNode {
  readonly name = NODE_NAME;
  readonly times: Partial<NodeStartTimes> = {};
  private readonly procs: ManagedProcess[] = [];
  private readonly sock = join(BASE, 'containerd', 'containerd.sock');
  private stopped = false;

  private constructor(
    private readonly cluster: Cluster,
    private readonly lock: NodeLock,
    readonly address: string,
    readonly logDir: string,
    readonly images: Record<string, Image>,
  ) {}

  /**
   * Starts a node against `cluster` (started with `realNode: true`). Waits for another test
   * file's node to stop first. `images` (from buildImages) are imported besides pause and
   * busybox, which every node has.
   */
  static async start(cluster: Cluster, extraImages: Image[] = []): Promise<RealNode> {
    const reason = nodeUnavailable();
    if (reason) throw new Error(reason);
    const images = buildImages('busybox', 'pause');
    for (const img of extraImages) images[img.name] = img;

    const waitStart = Date.now();
    const lock = await NodeLock.acquire();
    const node = new RealNode(
      cluster,
      lock,
      nodeAddress(),
      mkdtempSync(join(tmpdir(), 'amber-node-logs-')),
      images,
    );
    node.times.lockWaitMs = Date.now() - waitStart;
    liveNodes.add(node);
    try {
      await node.boot();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async boot(): Promise<void> {
    const t0 = Date.now();
    const mark = (k: keyof NodeStartTimes) => (this.times[k] = Date.now() - t0);
    cleanupHost();
    mark('cleanupMs');
    for (const d of [
      'containerd',
      'cni/net.d',
      'cni/ipam',
      'kubelet',
      'kubelet-pki',
      'pod-logs',
      'volume-plugins',
    ])
      mkdirSync(join(BASE, d), { recursive: true });
    // The bridge must hand packets between two pods to iptables, or NetworkPolicy never sees them.
    execFileSync('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables=1']);

    await this.startContainerd();
    mark('containerdReadyMs');
    for (const img of Object.values(this.images)) this.ctr(['images', 'import', img.archive]);
    mark('imagesImportedMs');

    const core = this.cluster.kubeConfig().makeApiClient(CoreV1Api);
    await this.startKubelet();
    await this.waitNode(core, () => true);
    mark('nodeRegisteredMs');
    // Nothing in the test control plane allocates pod CIDRs or lifts the not-ready taint the
    // API server puts on a new node (no node IPAM, no node lifecycle controller).
    await core.patchNode(
      { name: this.name, body: { spec: { podCIDR: POD_CIDR, podCIDRs: [POD_CIDR], taints: [] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await this.waitNode(
      core,
      (n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    );
    mark('nodeReadyMs');
    await this.startKubeRouter();
    mark('firewallReadyMs');
  }

  private async startContainerd(): Promise<void> {
    const dir = join(BASE, 'containerd');
    const config = join(dir, 'config.toml');
    this.setCriu(cachedCriu() ?? null);
    const path = `${join(cacheDir, `containerd-${nodeVersions.containerd}`)}:${CRIU_BIN}:${process.env.PATH}`;
    writeFileSync(config, containerdConfig(this.images.pause!.ref, path));
    writeFileSync(
      join(BASE, 'cni', 'net.d', '10-amber.conflist'),
      JSON.stringify(cniConfig(this.address), null, 2),
    );
    const p = ManagedProcess.start('containerd', bin('containerd'), ['--config', config], {
      logFile: join(this.logDir, 'containerd.log'),
      // containerd finds its shim on PATH: the one built with it, not a distribution's.
      env: { PATH: path },
    });
    this.procs.push(p);
    await p.waitUntil(async () => {
      this.ctr(['version']);
      return true;
    }, 30_000);
  }

  private async startKubelet(): Promise<void> {
    const pki = this.cluster.pki;
    const client = pki.issue('kubelet-client', { cn: `system:node:${this.name}`, org: ['system:nodes'] });
    const serving = pki.issue('kubelet-serving', { cn: this.name }, [this.address, this.name]);
    const kubeconfig = join(BASE, 'kubelet.kubeconfig');
    writeFileSync(kubeconfig, this.cluster.kubeConfigFile(client));
    const port = await freePort();
    const healthz = await freePort();
    const config = join(BASE, 'kubelet-config.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: this.address,
        port,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        healthzPort: healthz,
        tlsCertFile: serving.cert,
        tlsPrivateKeyFile: serving.key,
        authentication: {
          anonymous: { enabled: false },
          webhook: { enabled: true },
          x509: { clientCAFile: pki.caCert },
        },
        authorization: { mode: 'Webhook' },
        containerRuntimeEndpoint: `unix://${this.sock}`,
        // cgroup v1 without systemd on the test machines; v1 is deprecated, not refused.
        cgroupDriver: 'cgroupfs',
        failCgroupV1: false,
        failSwapOn: false,
        // Images are imported, never pulled: never collect them.
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        evictionHard: {
          'memory.available': '1Mi',
          'nodefs.available': '1%',
          'imagefs.available': '1%',
          'nodefs.inodesFree': '1%',
        },
        // No DNS for pods: a test pod has nothing to resolve and nowhere else to send traffic.
        resolvConf: '',
        podLogsDir: NODE_POD_LOGS,
        volumePluginDir: join(BASE, 'volume-plugins'),
        maxPods: 30,
        serializeImagePulls: false,
        shutdownGracePeriod: '0s',
      }),
    );
    const p = ManagedProcess.start(
      'kubelet',
      bin('kubelet'),
      [
        `--config=${config}`,
        `--kubeconfig=${kubeconfig}`,
        `--root-dir=${join(BASE, 'kubelet')}`,
        `--cert-dir=${join(BASE, 'kubelet-pki')}`,
        `--hostname-override=${this.name}`,
        `--node-ip=${this.address}`,
        '--v=1',
      ],
      { logFile: join(this.logDir, 'kubelet.log') },
    );
    this.procs.push(p);
    await p.waitUntil(async () => (await fetch(`http://127.0.0.1:${healthz}/healthz`)).ok, 60_000);
  }

  private async startKubeRouter(): Promise<void> {
    const p = ManagedProcess.start(
      'kube-router',
      bin('kube-router'),
      [
        `--kubeconfig=${this.cluster.kubeconfigPath}`,
        '--run-router=false',
        '--run-service-proxy=false',
        '--run-firewall=true',
        '--enable-cni=false',
        `--hostname-override=${this.name}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        `--health-port=${await freePort()}`,
        '--metrics-port=0',
        '--v=1',
      ],
      { logFile: join(this.logDir, 'kube-router.log') },
    );
    this.procs.push(p);
    // Its first full sync has installed the chains every pod's traffic goes through.
    await p.waitUntil(async () => {
      execFileSync('iptables', ['-S', 'KUBE-ROUTER-FORWARD'], { stdio: 'ignore' });
      return true;
    }, 60_000);
  }

  private async waitNode(core: CoreV1Api, ok: (n: V1Node) => boolean): Promise<void> {
    const kubelet = this.procs.find((p) => p.name === 'kubelet')!;
    await kubelet.waitUntil(async () => ok(await core.readNode({ name: this.name })), 60_000);
  }

  /** `ctr` against this node's containerd, in the CRI's namespace. */
  ctr(args: string[]): string {
    return execFileSync(
      bin('containerd', 'ctr'),
      ['--address', this.sock, '--namespace', 'k8s.io', ...args],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000,
      },
    );
  }

  /**
   * Which CRIU the node checkpoints with from now on: a path, or null for none (containerd then
   * refuses: "criu binary not found"). containerd's CRI looks `criu` up on its PATH before it
   * asks runc, and runc is told the same one with `--criu`: both wrappers are read at every
   * call and replaced in one rename each, so no call sees half of one.
   */
  setCriu(criu: string | null): void {
    const write = (path: string, text: string) => {
      writeFileSync(`${path}.tmp`, text, { mode: 0o755 });
      renameSync(`${path}.tmp`, path);
    };
    const onPath = join(CRIU_BIN, 'criu');
    mkdirSync(CRIU_BIN, { recursive: true });
    if (criu) write(onPath, `#!/bin/sh\nexec '${criu}' "$@"\n`);
    else rmSync(onPath, { force: true });
    // containerd's CRI never asks runc for --tcp-established, so CRIU refuses a container that
    // holds a connection ("Connected TCP socket"); a real node sets it in /etc/criu/runc.conf,
    // which runc hands to CRIU. This node leaves /etc alone: its runc wrapper adds the flag to
    // every checkpoint instead.
    write(
      RUNC_WRAPPER,
      [
        '#!/bin/sh',
        'n=$#',
        'for a in "$@"; do set -- "$@" "$a"; [ "$a" = checkpoint ] && set -- "$@" --tcp-established; done',
        'shift $n',
        `exec runc ${criu ? `--criu '${onPath}' ` : ''}"$@"`,
        '',
      ].join('\n'),
    );
  }

  /** The kubelet's checkpoint archives directory (its --root-dir/checkpoints). */
  get checkpointsDir(): string {
    return join(BASE, 'kubelet', 'checkpoints');
  }

  /** Imports an OCI archive (from buildImages) into the node's containerd. */
  importImage(img: Image): void {
    this.ctr(['images', 'import', img.archive]);
    this.images[img.name] = img;
  }

  logTail(name: string, lines = 40): string {
    return this.procs.find((p) => p.name === name)?.logTail(lines) ?? '(no such process)';
  }

  /**
   * Removes every pod the kubelet runs (so CNI and mounts are undone the normal way), stops the
   * node's programs, then removes whatever is left on the machine. Idempotent; safe after a
   * failed start or a failed test.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      const kubelet = this.procs.find((p) => p.name === 'kubelet');
      if (kubelet?.running) await this.drain().catch(() => undefined);
      for (const p of [...this.procs].reverse()) await p.stop('SIGTERM', 5_000);
      cleanupHost();
    } finally {
      liveNodes.delete(this);
      this.lock.release();
      if (!process.env.AMBER_KEEP_TESTENV) rmSync(this.logDir, { recursive: true, force: true });
    }
  }

  private async drain(): Promise<void> {
    const core = this.cluster.kubeConfig().makeApiClient(CoreV1Api);
    const pods = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.name}` });
    await Promise.all(
      pods.items.map((p) =>
        core
          .deleteNamespacedPod({
            namespace: p.metadata!.namespace!,
            name: p.metadata!.name!,
            gracePeriodSeconds: 0,
          })
          .catch(() => undefined),
      ),
    );
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && this.ctr(['tasks', 'list', '--quiet']).trim() !== '') await sleep(100);
  }
}

/** Runs node-cleanup.sh: everything a node leaves on the machine, with or without a clean stop. */
function cleanupHost(): void {
  execFileSync('bash', [CLEANUP, BASE], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
}

const liveNodes = new Set<RealNode>();
// A test process that exits without stop() (an interrupted run) still cleans the machine; the
// node's programs are killed first by ManagedProcess's own exit hook.
process.once('exit', () => {
  if (liveNodes.size === 0) return;
  try {
    cleanupHost();
  } catch {
    // The next node's start runs the same cleanup.
  }
});

/**
 * This machine's own address for the node: the first global IPv4 address outside the pod
 * network (the kubelet refuses a loopback one). AMBER_NODE_IP overrides it.
 */
function nodeAddress(): string {
  if (process.env.AMBER_NODE_IP) return process.env.AMBER_NODE_IP;
  const links = JSON.parse(
    execFileSync('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' }),
  ) as {
    ifname: string;
    addr_info: { local: string }[];
  }[];
  const addr = links
    .filter((l) => !/^(cni|veth|kube-)/.test(l.ifname))
    .flatMap((l) => l.addr_info.map((a) => a.local))
    .find((a) => !a.startsWith('10.244.'));
  if (!addr) throw new Error('no global IPv4 address on this machine for the node (set AMBER_NODE_IP)');
  return addr;
}

/**
 * `flock` on a fixed path, held by a child process for as long as its stdin stays open: the
 * lock goes with the node, and with this process if it dies.
 */
class NodeLock {
  private constructor(private readonly child: ChildProcess) {}

  static async acquire(timeoutMs = 15 * 60_000): Promise<NodeLock> {
    const child = spawn(
      'flock',
      [
        '--exclusive',
        '--timeout',
        String(timeoutMs / 1000),
        LOCK,
        'sh',
        '-c',
        'echo locked; exec cat >/dev/null',
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) =>
        reject(new Error(`could not lock ${LOCK} (flock exited ${code}): ${err}`)),
      );
    });
    return new NodeLock(child);
  }

  release(): void {
    this.child.stdin?.end();
  }
}

function containerdConfig(sandboxImage: string, path: string): string {
  const d = join(BASE, 'containerd');
  return `version = 3
root = "${d}/root"
state = "${d}/state"

[grpc]
  address = "${d}/containerd.sock"
[ttrpc]
  address = "${d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"

[plugins."io.containerd.nri.v1.nri"]
  socket_path = "${d}/nri.sock"
  plugin_path = "${d}/nri/plugins"
  plugin_config_path = "${d}/nri/conf.d"

# The shims' PATH, where the CRI also looks for \`criu\` before it asks runc to checkpoint.
[plugins."io.containerd.shim.v1.manager"]
  env = ["PATH=${path}"]

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${sandboxImage}"

[plugins."io.containerd.cri.v1.runtime"]
  # runc cannot lower oom_score_adj where CAP_SYS_RESOURCE is missing from every bounding set.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${BASE}/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${d}/runc"
        # runc with --criu: the CRIU the kubelet's checkpoint requests run (setCriu).
        BinaryName = "${RUNC_WRAPPER}"
`;
}

/**
 * Pods reach each other on the bridge, and the node's own address through it (a collection
 * Job's store forwarded there), but have no default route: nothing leaves this machine.
 */
function cniConfig(nodeAddress: string): unknown {
  return {
    cniVersion: '1.0.0',
    name: 'amber-test',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: POD_CIDR }]],
          routes: [{ dst: `${nodeAddress}/32` }],
          dataDir: join(BASE, 'cni', 'ipam'),
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ],
  };
}
