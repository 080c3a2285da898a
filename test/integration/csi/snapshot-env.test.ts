import { CoreV1Api, CustomObjectsApi, type V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotEntries, startCsi, type CsiEnv } from '../../testenv/csi.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { waitFor } from '../../testenv/wait.js';

// The test environment for volume snapshots (test/testenv/csi.ts), proved with the real
// csi-provisioner, csi-snapshotter and snapshot-controller: what a test of Amber's snapshots
// relies on holds here first.

let cluster: Cluster;
let csi: CsiEnv;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const ns = 'default';
const group = 'snapshot.storage.k8s.io';

beforeAll(async () => {
  cluster = await startCluster();
  csi = await startCsi(cluster);
  core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  custom = cluster.kubeConfig().makeApiClient(CustomObjectsApi);
});

afterAll(async () => {
  await csi?.stop();
  await cluster?.stop();
});

interface Snapshot {
  status?: { readyToUse?: boolean; boundVolumeSnapshotContentName?: string; restoreSize?: string };
}
interface Content {
  metadata: { name: string };
  spec: { driver: string; volumeSnapshotRef: { name: string } };
  status?: {
    readyToUse?: boolean;
    snapshotHandle?: string;
    restoreSize?: number;
    creationTime?: number;
  };
}

/** A claim of the environment's StorageClass, bound by the provisioner: its volume's handle. */
async function boundClaim(name: string): Promise<string> {
  await core.createNamespacedPersistentVolumeClaim({
    namespace: ns,
    body: {
      metadata: { name },
      spec: {
        storageClassName: csi.storageClass,
        accessModes: ['ReadWriteOnce'],
        resources: { requests: { storage: '1Mi' } },
      },
    },
  });
  const claim = await waitFor<V1PersistentVolumeClaim>(
    `claim ${name} Bound\n${csi.logTails()}`,
    () => core.readNamespacedPersistentVolumeClaim({ name, namespace: ns }),
    (c) => c.status?.phase === 'Bound',
    60_000,
  );
  const pv = await core.readPersistentVolume({ name: claim.spec!.volumeName! });
  expect(pv.spec?.csi?.driver).toBe(csi.driver);
  return pv.spec!.csi!.volumeHandle;
}

/** A VolumeSnapshot of a claim, made by hand, once ready: it and its content. */
async function readySnapshot(name: string, claim: string): Promise<{ snapshot: Snapshot; content: Content }> {
  await custom.createNamespacedCustomObject({
    group,
    version: 'v1',
    namespace: ns,
    plural: 'volumesnapshots',
    body: {
      apiVersion: `${group}/v1`,
      kind: 'VolumeSnapshot',
      metadata: { name },
      spec: { volumeSnapshotClassName: csi.snapshotClass, source: { persistentVolumeClaimName: claim } },
    },
  });
  const snapshot = await waitFor<Snapshot>(
    `snapshot ${name} ready\n${csi.logTails()}`,
    () =>
      custom.getNamespacedCustomObject({
        group,
        version: 'v1',
        namespace: ns,
        plural: 'volumesnapshots',
        name,
      }) as Promise<Snapshot>,
    (s) => s.status?.readyToUse === true && !!s.status.boundVolumeSnapshotContentName,
    60_000,
  );
  const content = (await custom.getClusterCustomObject({
    group,
    version: 'v1',
    plural: 'volumesnapshotcontents',
    name: snapshot.status!.boundVolumeSnapshotContentName!,
  })) as Content;
  return { snapshot, content };
}

describe('the volume snapshot test environment', () => {
  it('provisions a claim through the real csi-provisioner and snapshots it through the real snapshotter, data included', async () => {
    const handle = await boundClaim('data');
    const volume = csi.volumeDir(handle);
    mkdirSync(join(volume, 'logs'));
    writeFileSync(join(volume, 'logs', 'app.log'), 'before the snapshot\n');

    const { snapshot, content } = await readySnapshot('data-snap', 'data');
    expect(snapshot.status?.restoreSize).toBe('1Mi');
    expect(content.spec.driver).toBe(csi.driver);
    expect(content.spec.volumeSnapshotRef.name).toBe('data-snap');
    expect(content.status).toMatchObject({ readyToUse: true, restoreSize: 1024 * 1024 });
    const snapshotHandle = content.status!.snapshotHandle!;
    expect(snapshotHandle).toMatch(/^snapshot-/);
    const file = csi.snapshotFile(snapshotHandle);
    expect((await snapshotEntries(file)).get('logs/app.log')?.body.toString()).toBe('before the snapshot\n');

    // The snapshot is a copy: the volume moves on, the snapshot does not.
    writeFileSync(join(volume, 'logs', 'app.log'), 'rewritten after the snapshot\n');
    writeFileSync(join(volume, 'new.txt'), 'new\n');
    const after = await snapshotEntries(file);
    expect(after.get('logs/app.log')?.body.toString()).toBe('before the snapshot\n');
    expect(after.has('new.txt')).toBe(false);
  });

  it('a snapshot outlives its claim, and its content and data outlive its VolumeSnapshot (deletionPolicy Retain)', async () => {
    const handle = await boundClaim('gone');
    const volume = csi.volumeDir(handle);
    writeFileSync(join(volume, 'kept'), 'kept\n');
    const { content } = await readySnapshot('gone-snap', 'gone');
    const file = csi.snapshotFile(content.status!.snapshotHandle!);

    // The claim deleted: its volume goes (reclaimPolicy Delete), the snapshot stays.
    await core.deleteNamespacedPersistentVolumeClaim({ name: 'gone', namespace: ns });
    await waitFor(
      `volume ${handle} deleted\n${csi.logTails()}`,
      () =>
        core
          .readPersistentVolume({ name: handle })
          .then(() => false)
          .catch((e: { code?: number }) => e.code === 404),
      (gone) => gone,
      60_000,
    );
    expect(existsSync(volume)).toBe(false);
    expect((await snapshotEntries(file)).get('kept')?.body.toString()).toBe('kept\n');

    // The VolumeSnapshot deleted: its content and the data stay.
    const snapshots = { group, version: 'v1', namespace: ns, plural: 'volumesnapshots' };
    await custom.deleteNamespacedCustomObject({ ...snapshots, name: 'gone-snap' });
    await waitFor(
      `snapshot gone-snap deleted\n${csi.logTails()}`,
      () =>
        custom
          .getNamespacedCustomObject({ ...snapshots, name: 'gone-snap' })
          .then(() => false)
          .catch((e: { code?: number }) => e.code === 404),
      (gone) => gone,
      60_000,
    );
    const kept = (await custom.getClusterCustomObject({
      group,
      version: 'v1',
      plural: 'volumesnapshotcontents',
      name: content.metadata.name,
    })) as Content;
    expect(kept.status?.snapshotHandle).toBe(content.status!.snapshotHandle);
    expect((await snapshotEntries(file)).get('kept')?.body.toString()).toBe('kept\n');
  });

  it('attack: a volume holding links to host files is snapshotted with the links, never the files they name', async () => {
    const handle = await boundClaim('links');
    const volume = csi.volumeDir(handle);
    symlinkSync('/etc/shadow', join(volume, 'shadow'));
    symlinkSync('/etc', join(volume, 'etc'));
    const hostSecret = readFileSync('/etc/shadow');
    expect(hostSecret.length).toBeGreaterThan(0); // else the check below could not fail

    const { content } = await readySnapshot('links-snap', 'links');
    const file = csi.snapshotFile(content.status!.snapshotHandle!);
    const entries = await snapshotEntries(file);
    expect(entries.get('shadow')).toMatchObject({ type: 'symlink', linkname: '/etc/shadow' });
    expect(entries.get('shadow')?.body.length).toBe(0);
    expect(entries.get('etc')).toMatchObject({ type: 'symlink', linkname: '/etc' });
    expect([...entries.keys()].filter((name) => name.startsWith('etc/'))).toEqual([]);
    expect(readFileSync(file).includes(hostSecret)).toBe(false);
  });

  it('attack: a FIFO in the volume is stored as a FIFO and does not hang the snapshot', async () => {
    const handle = await boundClaim('fifo');
    execFileSync('mkfifo', [join(csi.volumeDir(handle), 'pipe')]); // no writer: a read would block
    const { content } = await readySnapshot('fifo-snap', 'fifo');
    const entries = await snapshotEntries(csi.snapshotFile(content.status!.snapshotHandle!));
    expect(entries.get('pipe')).toMatchObject({ type: 'fifo', body: Buffer.alloc(0) });
  });

  it('a snapshot taken outside the cluster is imported through ListSnapshots (a pre-provisioned content)', async () => {
    await boundClaim('source');
    const { content: original } = await readySnapshot('source-snap', 'source');
    const handle = original.status!.snapshotHandle!;
    await custom.createClusterCustomObject({
      group,
      version: 'v1',
      plural: 'volumesnapshotcontents',
      body: {
        apiVersion: `${group}/v1`,
        kind: 'VolumeSnapshotContent',
        metadata: { name: 'imported-content' },
        spec: {
          driver: csi.driver,
          deletionPolicy: 'Retain',
          source: { snapshotHandle: handle },
          volumeSnapshotRef: { name: 'imported', namespace: ns },
        },
      },
    });
    await custom.createNamespacedCustomObject({
      group,
      version: 'v1',
      namespace: ns,
      plural: 'volumesnapshots',
      body: {
        apiVersion: `${group}/v1`,
        kind: 'VolumeSnapshot',
        metadata: { name: 'imported' },
        spec: { source: { volumeSnapshotContentName: 'imported-content' } },
      },
    });
    const snapshot = await waitFor<Snapshot>(
      `snapshot imported ready\n${csi.logTails()}`,
      () =>
        custom.getNamespacedCustomObject({
          group,
          version: 'v1',
          namespace: ns,
          plural: 'volumesnapshots',
          name: 'imported',
        }) as Promise<Snapshot>,
      (s) => s.status?.readyToUse === true,
      60_000,
    );
    expect(snapshot.status).toMatchObject({
      boundVolumeSnapshotContentName: 'imported-content',
      restoreSize: '1Mi',
    });
    // Its status came from the driver's ListSnapshots: the stored snapshot's own time and size.
    const imported = (await custom.getClusterCustomObject({
      group,
      version: 'v1',
      plural: 'volumesnapshotcontents',
      name: 'imported-content',
    })) as Content;
    expect(imported.status).toMatchObject({
      snapshotHandle: handle,
      readyToUse: true,
      restoreSize: 1024 * 1024,
      creationTime: original.status!.creationTime,
    });
  });
});
