import { BatchV1Api } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectionJobName } from '../../../src/collection/job.js';
import { MANIFEST_NAME } from '../../../src/evidence/manifest.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startCaseController } from '../../testenv/operator.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';
import { createSigningKeySecret, markRunning, objectVersions } from './helpers.js';

/**
 * Job mode against a real API server and kube-controller-manager: the operator's Job is
 * validated and defaulted by the API server, the Job controller makes its Pod, and kwok (the
 * node is a kwok fake) runs it to Succeeded without running anything, so the collector's report
 * never appears: the case must say so, and still seal what the operator itself gathered.
 */
describe('job collection on a kwok node', () => {
  let cluster: Cluster;
  let minio: Minio;
  let w: Workloads;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  const node = 'node-k';
  const containerId = randomBytes(32).toString('hex');

  beforeAll(async () => {
    [cluster, minio] = await Promise.all([
      startCluster({ controllerManager: true, kwok: true }),
      startMinio(),
    ]);
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.node(node);
    await w.namespace('shop');
    const opKc = await operatorKubeConfig(cluster);
    await createSigningKeySecret(admin);
    operator = await startCaseController(opKc, {
      collection: {
        mode: 'job',
        image: 'amber:test',
        pollMs: 1_000,
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
      },
    });
  });
  afterAll(async () => {
    await operator?.stop();
    await minio?.stop();
    await cluster?.stop();
  });

  it('creates the Job on the suspect node, then seals and says what is missing; deletes the pod only after', async () => {
    const [pod] = await w.replicaSet('shop', 'web', node, 1);
    const podName = pod!.metadata!.name!;
    await markRunning(cluster.kubeConfig(), 'shop', podName, `containerd://${containerId}`);
    await w.createCase('case-job', {
      target: { namespace: 'shop', pod: podName },
      reason: 'test: job mode',
      containment: { deletePodAfterSeal: true },
      collection: { timeoutSeconds: 300 },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });

    const kase = await w.waitForPhase('case-job', 'Sealed', 90_000);
    const batch = cluster.kubeConfig().makeApiClient(BatchV1Api);
    const job = await batch.readNamespacedJob({
      namespace: OPERATOR_NAMESPACE,
      name: collectionJobName({ name: 'case-job', uid: kase.metadata.uid }, 'main'),
    });
    const spec = job.spec!.template.spec!;
    expect(spec.nodeName).toBe(node);
    expect(spec.hostPID).toBe(true);
    expect(spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(spec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--container-id',
        containerId,
        '--runtime',
        'containerd',
        '--node',
        node,
        '--bucket',
        minio.bucket,
      ]),
    );
    expect(spec.containers[0]!.volumeMounts).toEqual([
      expect.objectContaining({ mountPath: '/host', readOnly: true }),
    ]);
    expect(job.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ForensicCase',
      uid: kase.metadata.uid,
    });
    expect(job.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')).toBe(true);
    const jobPods = await w.core.listNamespacedPod({
      namespace: OPERATOR_NAMESPACE,
      labelSelector: `batch.kubernetes.io/job-name=${job.metadata!.name}`,
    });
    expect(jobPods.items.map((p) => p.spec?.nodeName)).toEqual([node]);

    const collected = kase.status?.conditions?.find((c) => c.type === 'EvidenceCollected');
    expect(collected).toMatchObject({ status: 'False', reason: 'Incomplete' });
    expect(collected?.message).toMatch(
      /0 of 1 containers collected; missing container main: Job .* succeeded; its pod left no termination message; and the store holds no report.json/,
    );
    expect((kase.status?.timeline ?? []).find((e) => e.action === 'CollectEvidence')?.outcome).toBe('Failed');

    // What the operator gathered itself is sealed, the detached pod's former owner included.
    const objects = await objectVersions(minio.client(), minio.bucket, 'amber/case-job/');
    for (const n of [
      'orchestrator/pod.yaml',
      'orchestrator/owner.yaml',
      'orchestrator/node.yaml',
      MANIFEST_NAME,
    ])
      expect(objects.some((o) => o.startsWith(`amber/case-job/${n}@`))).toBe(true);

    const deleted = await waitFor(
      'pod deleted after seal',
      () => w.getCase('case-job'),
      (c) => (c.status?.timeline ?? []).some((e) => e.action === 'DeletePod'),
    );
    expect(deleted.status?.timeline?.find((e) => e.action === 'DeletePod')?.outcome).toBe('Succeeded');
    await waitFor(
      'pod gone',
      () => w.core.listNamespacedPod({ namespace: 'shop', fieldSelector: `metadata.name=${podName}` }),
      (l) => l.items.length === 0 || l.items[0]!.metadata?.deletionTimestamp !== undefined,
    );
  });
});
