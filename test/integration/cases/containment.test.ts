import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  NODE_HOLDERS_ANNOTATION,
  ORIGINAL_LABELS_ANNOTATION,
  QUARANTINE_LABEL,
  QUARANTINE_TAINT_KEY,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';

const contain = (pod: string, extra: Record<string, unknown> = {}) => ({
  target: { namespace: 'shop', pod },
  reason: 'test: shell in container',
  ...extra,
});
const actions = (c: CaseView) => (c.status?.timeline ?? []).map((e) => e.action);

describe('containment and release against a real control plane, as the operator ServiceAccount', () => {
  let cluster: Cluster;
  let w: Workloads;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  let pods: V1Pod[];

  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.node('node-a');
    await w.node('node-b');
    await w.namespace('shop');
    pods = await w.replicaSet('shop', 'web', 'node-a', 2);
    operator = await startCaseController(await operatorKubeConfig(cluster));
  });
  afterAll(async () => {
    await operator?.stop();
    await cluster?.stop();
  });

  it('isolates, detaches and holds the node; the ReplicaSet replaces the pod, which keeps running', async () => {
    const suspect = pods[0]!.metadata!.name!;
    await w.createCase('case-web', contain(suspect));
    const kase = await w.waitForPhase('case-web', 'Contained');

    const np = await w.core.listNamespacedPod({ namespace: 'shop' }); // RBAC sanity: admin view
    expect(np.items.length).toBeGreaterThanOrEqual(2);
    // The namespace's standing policy selects the pod by its network label (ADR 0025).
    const policy = await cluster
      .kubeConfig()
      .makeApiClient((await import('@kubernetes/client-node')).NetworkingV1Api)
      .readNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME });
    expect(policy.spec?.podSelector).toEqual({
      matchExpressions: [{ key: NETWORK_QUARANTINE_LABEL, operator: 'Exists' }],
    });
    expect(policy.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec?.ingress ?? []).toEqual([]);
    expect(policy.spec?.egress ?? []).toEqual([]);
    expect(policy.metadata?.ownerReferences ?? []).toEqual([]);

    const pod = await w.core.readNamespacedPod({ namespace: 'shop', name: suspect });
    expect(pod.metadata?.labels).toEqual({
      team: 'payments',
      [CASE_LABEL]: 'case-web',
      [QUARANTINE_LABEL]: 'true',
      [NETWORK_QUARANTINE_LABEL]: 'case-web',
    });
    expect(JSON.parse(pod.metadata!.annotations![ORIGINAL_LABELS_ANNOTATION]!)).toEqual({ app: 'web' });
    expect(pod.metadata?.deletionTimestamp).toBeUndefined();

    // The real ReplicaSet controller orphans the suspect and starts a replacement.
    const replacements = await w.runningPods('shop', 'app=web', 2);
    expect(replacements.map((p) => p.metadata!.name)).not.toContain(suspect);
    const orphan = await waitFor(
      'suspect orphaned',
      () => w.core.readNamespacedPod({ namespace: 'shop', name: suspect }),
      (p) => !p.metadata?.ownerReferences?.length,
    );
    expect(orphan.status?.phase).toBe('Running');

    const node = await w.core.readNode({ name: 'node-a' });
    expect(node.spec?.unschedulable).toBe(true);
    expect(node.spec?.taints).toContainEqual({
      key: QUARANTINE_TAINT_KEY,
      value: 'true',
      effect: 'NoSchedule',
    });
    expect(node.spec?.taints?.some((t) => t.effect === 'NoExecute')).toBe(false);
    expect(node.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]).toBe('case-web');

    expect(kase.status?.node).toBe('node-a');
    expect(kase.metadata.finalizers).toContain('forensics.amber.io/release');
    expect(actions(kase)).toEqual(['IsolateNetwork', 'LabelPod', 'ContainNode']);
    const contained = kase.status?.conditions?.find((c) => c.type === 'Contained');
    expect(contained).toMatchObject({ status: 'True', observedGeneration: kase.metadata.generation });

    // Events go out after the status write that recorded them: wait for it, not race it.
    const events = await waitFor(
      'Contained Event',
      () =>
        w.core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=case-web' }),
      (l) => l.items.length > 0,
    );
    expect(events.items.map((e) => e.reason)).toEqual(['Contained']);
    expect(events.items[0]?.message).toContain('IsolateNetwork, LabelPod, ContainNode');
  });

  it('puts a deleted standing quarantine NetworkPolicy back', async () => {
    const { NetworkingV1Api } = await import('@kubernetes/client-node');
    const net = cluster.kubeConfig().makeApiClient(NetworkingV1Api);
    await net.deleteNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME });
    await waitFor(
      'policy restored',
      () => net.readNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME }),
      () => true,
    );
    const events = await waitFor(
      'repair Event',
      () =>
        w.core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=case-web' }),
      (l) => l.items.some((e) => e.reason === 'IsolateNetwork'),
    );
    expect(events.items.find((e) => e.reason === 'IsolateNetwork')?.message).toContain(
      '(repaired: it was deleted)',
    );
  });

  it('keeps a node cordoned until the last case on it is released', async () => {
    const [other] = await w.runningPods('shop', 'app=web', 2);
    await w.createCase('case-second', contain(other!.metadata!.name!));
    await w.waitForPhase('case-second', 'Contained');
    let node = await w.core.readNode({ name: 'node-a' });
    expect(node.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]).toBe('case-second,case-web');

    await w.patchCaseSpec('case-web', { release: true });
    const released = await w.waitForPhase('case-web', 'Released');
    node = await w.core.readNode({ name: 'node-a' });
    expect(node.spec?.unschedulable).toBe(true);
    expect(node.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]).toBe('case-second');
    expect(actions(released)).toEqual(
      expect.arrayContaining(['ReleaseNetwork', 'ReleasePod', 'ReleaseNode']),
    );

    // Releasing by deleting the case: the finalizer lets go of the node before the case goes.
    await w.custom.deleteClusterCustomObject({
      group: 'forensics.amber.io',
      version: 'v1alpha1',
      plural: 'forensiccases',
      name: 'case-second',
    });
    node = await waitFor(
      'node uncordoned',
      () => w.core.readNode({ name: 'node-a' }),
      (n) => !n.spec?.unschedulable,
    );
    expect((node.spec?.taints ?? []).filter((t) => t.key === QUARANTINE_TAINT_KEY)).toEqual([]);
    expect(node.metadata?.labels?.[QUARANTINE_LABEL]).toBeUndefined();
    await waitFor(
      'case deleted',
      () =>
        w
          .getCase('case-second')
          .then(() => false)
          .catch((e) => e.code === 404),
      (gone) => gone,
    );
  });

  it('restores the original labels on release only when asked, and never deletes the pod', async () => {
    const [p] = await w.runningPods('shop', 'app=web', 2);
    const name = p!.metadata!.name!;
    await w.createCase(
      'case-restore',
      contain(name, {
        containment: { restoreLabelsOnRelease: true, cordonNode: false, taintNode: false, labelNode: false },
      }),
    );
    await w.waitForPhase('case-restore', 'Contained');
    await w.patchCaseSpec('case-restore', { release: true });
    await w.waitForPhase('case-restore', 'Released');
    const pod = await w.core.readNamespacedPod({ namespace: 'shop', name });
    expect(pod.metadata?.labels).toMatchObject({ app: 'web', team: 'payments' });
    expect(pod.metadata?.labels?.[CASE_LABEL]).toBeUndefined();
    expect(pod.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBeUndefined();
    const node = await w.core.readNode({ name: 'node-a' });
    expect(node.spec?.unschedulable).toBeFalsy();
  });

  it('says containment is impossible when the pod is gone', async () => {
    await w.createCase('case-ghost', contain('no-such-pod'));
    const c = await w.waitForPhase('case-ghost', 'Failed');
    expect(c.status?.conditions?.find((x) => x.type === 'Contained')).toMatchObject({
      status: 'False',
      reason: 'PodNotFound',
    });
    // The Reason printer column (kubectl get fcase) reads status.reason.
    expect(c.status).toMatchObject({
      reason: 'PodNotFound',
      message: expect.stringContaining('no-such-pod'),
    });
  });

  it('refuses a pod already held by another case', async () => {
    const [p] = await w.runningPods('shop', 'app=web', 2);
    await w.createCase(
      'case-first',
      contain(p!.metadata!.name!, { containment: { cordonNode: false, taintNode: false, labelNode: false } }),
    );
    await w.waitForPhase('case-first', 'Contained');
    await w.createCase('case-dup', contain(p!.metadata!.name!));
    const c = await w.waitForPhase('case-dup', 'Failed');
    expect(c.status?.conditions?.find((x) => x.type === 'Contained')).toMatchObject({
      reason: 'HeldByOtherCase',
      message: expect.stringContaining('case-first'),
    });
  });

  it('never acts in a protected namespace, and says why without retrying', async () => {
    await w.createCase('case-kube-system', {
      target: { namespace: 'kube-system', pod: 'etcd-x' },
      reason: 'bait',
    });
    const c = await w.waitForPhase('case-kube-system', 'Invalid');
    expect(c.status?.conditions?.find((x) => x.type === 'Valid')).toMatchObject({
      status: 'False',
      reason: 'ProtectedNamespace',
    });
    expect(c.metadata.finalizers ?? []).toEqual([]);
  });

  it('tolerates a node that is gone', async () => {
    const core = w.core;
    await core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name: 'lonely', labels: { app: 'lonely' } },
        spec: { nodeName: 'node-gone', containers: [{ name: 'c', image: 'x' }] },
      },
    });
    await w.createCase('case-lonely', contain('lonely'));
    const c = await w.waitForPhase('case-lonely', 'Contained');
    expect(c.status?.timeline?.find((e) => e.action === 'ContainNode')).toMatchObject({
      outcome: 'Skipped',
      message: 'node node-gone is gone',
    });
  });
});
