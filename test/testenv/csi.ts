import type { KubernetesObject } from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { binary, csiPrograms } from './binaries.js';
import { installCrdFiles } from './crds.js';
import type { Cluster } from './kube.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';
import { RawApi } from './raw-api.js';

export interface CsiOptions {
  /** The CSI driver name (StorageClass provisioner, VolumeSnapshotClass driver). */
  driverName?: string;
  /** Create the VolumeSnapshotClass (default true); false: a driver no class snapshots. */
  snapshotClass?: boolean;
}

/** The log files of the programs startCsi runs, by program. */
export interface CsiLogs {
  driver: string;
  pvControllers: string;
  provisioner: string;
  snapshotter: string;
  snapshotController: string;
}

export interface CsiEnv {
  /** The driver's name, e.g. `hostpath.amber.test`. */
  driver: string;
  /** A StorageClass of the driver: Immediate binding, reclaimPolicy Delete. */
  storageClass: string;
  /** The driver's VolumeSnapshotClass (deletionPolicy Retain, the default class), or undefined. */
  snapshotClass: string | undefined;
  /** Everything of this environment: logs, the driver's socket and state. */
  dir: string;
  logs: CsiLogs;
  /** The directory holding a volume's data, by PV name (the driver's volume handle is the PV name). */
  volumeDir(pvNameOrHandle: string): string;
  /** The tar file holding a snapshot's data, by the content's status.snapshotHandle. */
  snapshotFile(snapshotHandle: string): string;
  /** The last lines of every log, for a failing test's message. */
  logTails(lines?: number): string;
  /** Stops every program (in reverse order) and removes `dir` unless AMBER_KEEP_TESTENV is set. */
  stop(): Promise<void>;
}

/**
 * The CSI volume snapshot machinery against a running test cluster, for the test files that
 * need it: the snapshot CRDs released with the external-snapshotter (installed and Established),
 * our fixture driver test/tools/csi-hostpath on a unix socket, the real csi-provisioner,
 * csi-snapshotter and snapshot-controller, and a kube-controller-manager running only the
 * PersistentVolume binder and the PV and PVC protection controllers (the test cluster's own
 * controller manager, when it runs, leaves the binder out: without it no claim is handed to the
 * provisioner nor bound; without the protection controllers a deleted claim would keep its
 * finalizer for ever; when both run the protection controllers, they agree). Then a
 * StorageClass and a VolumeSnapshotClass for the driver.
 *
 * These third-party components run with the cluster's admin kubeconfig: they are the test's
 * storage system, not Amber, whose own RBAC the tests check elsewhere.
 *
 * Stopped by stop() (call it in afterAll); if the test process dies first, ManagedProcess kills
 * every program it started.
 */
export async function startCsi(cluster: Cluster, opts: CsiOptions = {}): Promise<CsiEnv> {
  const programs = csiPrograms();
  const driver = opts.driverName ?? 'hostpath.amber.test';
  const dir = mkdtempSync(join(tmpdir(), 'amber-csi-'));
  const state = join(dir, 'state');
  mkdirSync(state);
  const socket = join(dir, 'csi.sock');
  const kubeconfig = `--kubeconfig=${cluster.kubeconfigPath}`;
  const logs: CsiLogs = {
    driver: join(dir, 'csi-hostpath.log'),
    pvControllers: join(dir, 'pv-controllers.log'),
    provisioner: join(dir, 'csi-provisioner.log'),
    snapshotter: join(dir, 'csi-snapshotter.log'),
    snapshotController: join(dir, 'snapshot-controller.log'),
  };
  const started: ManagedProcess[] = [];
  const start = (name: string, command: string, args: string[], logFile: string) => {
    const p = ManagedProcess.start(name, command, args, { logFile });
    started.push(p);
    return p;
  };
  const logPattern = (p: ManagedProcess, pattern: RegExp) => async () => pattern.test(p.logTail(500));
  const noGroupSnapshots = '--feature-gates=CSIVolumeGroupSnapshot=false'; // their CRDs are not installed

  const env: CsiEnv = {
    driver,
    storageClass: 'amber-test-hostpath',
    snapshotClass: opts.snapshotClass === false ? undefined : 'amber-test-hostpath',
    dir,
    logs,
    volumeDir: (id) => join(state, 'volumes', checkedId(id)),
    snapshotFile: (id) => join(state, 'snapshots', `${checkedId(id)}.tar`),
    logTails: (lines = 20) =>
      started.map((p) => `--- ${p.name} (${p.logFile}) ---\n${p.logTail(lines)}`).join('\n'),
    stop: async () => {
      for (const p of [...started].reverse()) await p.stop();
      if (!process.env.AMBER_KEEP_TESTENV) rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    const kc = cluster.kubeConfig();
    await installCrdFiles(kc, programs.snapshotCrds);

    const hostpath = start(
      'csi-hostpath',
      programs.csiHostpath,
      [`--socket=${socket}`, `--state-dir=${state}`, `--driver-name=${driver}`],
      logs.driver,
    );
    await hostpath.waitUntil(async () => existsSync(socket));

    const pvControllers = start(
      'pv-controllers',
      binary('kube', 'kube-controller-manager'),
      [
        kubeconfig,
        '--leader-elect=false',
        '--controllers=persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,persistentvolume-protection-controller',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        '--v=1',
      ],
      logs.pvControllers,
    );
    const provisioner = start(
      'csi-provisioner',
      programs.csiProvisioner,
      [`--csi-address=${socket}`, kubeconfig, '--leader-election=false', '--v=3'],
      logs.provisioner,
    );
    const snapshotter = start(
      'csi-snapshotter',
      programs.csiSnapshotter,
      [`--csi-address=${socket}`, kubeconfig, '--leader-election=false', noGroupSnapshots, '--v=3'],
      logs.snapshotter,
    );
    const controller = start(
      'snapshot-controller',
      programs.snapshotController,
      [kubeconfig, '--leader-election=false', noGroupSnapshots, '--v=3'],
      logs.snapshotController,
    );
    // Readiness only turns a program that cannot start into an early failure with its log: they
    // all list what exists when they start, so nothing created before they are ready is missed.
    await pvControllers.waitUntil(
      logPattern(
        pvControllers,
        /Started controller|Starting persistent volume controller|Caches are synced/i,
      ),
    );
    await provisioner.waitUntil(logPattern(provisioner, /Started provisioner controller/));
    await snapshotter.waitUntil(logPattern(snapshotter, /Starting CSI snapshotter/));
    await controller.waitUntil(logPattern(controller, /Starting snapshot controller/));

    const raw = new RawApi(kc);
    await raw.apply({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: env.storageClass },
      provisioner: driver,
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'Immediate',
    } as KubernetesObject);
    if (env.snapshotClass) {
      await raw.apply({
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshotClass',
        metadata: {
          name: env.snapshotClass,
          // A VolumeSnapshot that names no class gets this one.
          annotations: { 'snapshot.storage.kubernetes.io/is-default-class': 'true' },
        },
        driver,
        deletionPolicy: 'Retain',
      } as KubernetesObject);
    }
  } catch (err) {
    const tails = env.logTails();
    await env.stop();
    throw new Error(`${String(err)}\n${tails}`);
  }
  return env;
}

/** Volume and snapshot handles of the fixture are plain names; anything else is a test's bug. */
function checkedId(id: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(id)) throw new Error(`not a csi-hostpath handle: ${id}`);
  return id;
}

/** The entries of a snapshot's tar file, by path (directories without their trailing /). */
export async function snapshotEntries(
  file: string,
): Promise<Map<string, { type: string; linkname?: string; body: Buffer }>> {
  const out = new Map<string, { type: string; linkname?: string; body: Buffer }>();
  const ex = extract();
  Readable.from([readFileSync(file)]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.set(entry.header.name.replace(/\/$/, ''), {
      type: entry.header.type,
      linkname: entry.header.linkname ?? undefined,
      body: Buffer.concat(chunks),
    });
  }
  return out;
}
