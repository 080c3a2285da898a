import { NetworkingV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NETWORK_QUARANTINE_LABEL,
  NODE_HOLDERS_ANNOTATION,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startCaseController } from '../../testenv/operator.js';
import { CuttableProxy, throughProxy } from '../../testenv/proxy.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * A controller that dies half way through a case is replaced by a fresh one (new caches, new
 * queue: all it knows is what the API server holds). Every case must end contained exactly
 * once: one standing NetworkPolicy, one timeline entry per action, the node held once. The
 * standing policy is deleted before each case so that its creation is a step of every pass.
 */
describe('crash in the middle of a case, restart', () => {
  let cluster: Cluster;
  let w: Workloads;

  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
    await installCrds(cluster.kubeConfig());
    w = new Workloads(cluster.kubeConfig());
    await w.node('node-c');
    await w.namespace('shop');
    await w.replicaSet('shop', 'api', 'node-c', 1);
  });
  afterAll(async () => cluster?.stop());

  const net = () => cluster.kubeConfig().makeApiClient(NetworkingV1Api);
  /**
   * A pod in a namespace of its own: the case under test is then the one that creates the
   * namespace's standing policy (another open case in the same namespace would put it back
   * first, and the step under test would never come).
   */
  const podInOwnNamespace = async (namespace: string) => {
    await w.namespace(namespace);
    await w.replicaSet(namespace, 'api', 'node-c', 1);
    const [pod] = await w.runningPods(namespace, 'app=api', 1);
    return pod!;
  };

  it.each(['finalizer', 'network-policy', 'pod-labels', 'node'])(
    'crash after %s: completed exactly once',
    async (step) => {
      const opKc = await operatorKubeConfig(cluster);
      const name = `crash-${step}`;
      const pod = await podInOwnNamespace(name);
      let crashed = false;
      // The doomed controller reaches the API server through a proxy; at the crash point the
      // proxy is cut, so nothing it still had in flight or queued can reach the world.
      const line = await CuttableProxy.start(Number(new URL(cluster.server).port));
      const doomed = await startCaseController(throughProxy(opKc, line), {
        retryBaseDelayMs: 600_000,
        afterStep: (s, kase) => {
          if (kase === name && s === step && !crashed) {
            crashed = true;
            line.cut();
            throw new Error(`simulated crash after ${s}`);
          }
        },
      });
      await w.createCase(name, {
        target: { namespace: name, pod: pod.metadata!.name! },
        reason: 'crash test',
      });
      await waitFor(
        `crash at ${step}`,
        async () => crashed,
        (c) => c,
      );
      await doomed.stop();
      await line.close();
      expect((await w.getCase(name)).status?.phase).not.toBe('Contained');

      const fresh = await startCaseController(opKc);
      try {
        const kase = await w.waitForPhase(name, 'Contained');
        const actions = (kase.status?.timeline ?? []).map((e) => e.action);
        expect(actions).toEqual(['IsolateNetwork', 'LabelPod', 'ContainNode']);
        const policies = await net().listNamespacedNetworkPolicy({ namespace: name });
        expect(policies.items.map((p) => p.metadata?.name)).toEqual([STANDING_POLICY_NAME]);
        const labelled = await w.core.readNamespacedPod({ namespace: name, name: pod.metadata!.name! });
        expect(labelled.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe(name);
        const node = await w.core.readNode({ name: 'node-c' });
        expect(
          node.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]?.split(',').filter((h) => h === name),
        ).toEqual([name]);
        expect(kase.status?.conditions?.filter((c) => c.type === 'Contained')).toHaveLength(1);
      } finally {
        await fresh.stop();
      }
    },
  );
  it('crash after the node patch, then the pod deleted: the node is not left held by the case', async () => {
    const opKc = await operatorKubeConfig(cluster);
    const [pod] = await w.runningPods('shop', 'app=api', 1);
    const podName = pod!.metadata!.name!;
    const name = 'crash-node-then-gone';
    let crashed = false;
    const line = await CuttableProxy.start(Number(new URL(cluster.server).port));
    const doomed = await startCaseController(throughProxy(opKc, line), {
      retryBaseDelayMs: 600_000,
      afterStep: (s, kase) => {
        if (kase === name && s === 'node' && !crashed) {
          crashed = true;
          line.cut();
          throw new Error('simulated crash after the node patch');
        }
      },
    });
    await w.createCase(name, { target: { namespace: 'shop', pod: podName }, reason: 'crash test' });
    await waitFor(
      'crash at node',
      async () => crashed,
      (c) => c,
    );
    await doomed.stop();
    await line.close();
    const listed = (n: { metadata?: { annotations?: Record<string, string> } }) =>
      (n.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION] ?? '').split(',').includes(name);
    expect(listed(await w.core.readNode({ name: 'node-c' }))).toBe(true);
    await w.core.deleteNamespacedPod({ namespace: 'shop', name: podName, gracePeriodSeconds: 0 });

    const fresh = await startCaseController(opKc);
    try {
      const kase = await waitFor(
        'pod reported gone',
        () => w.getCase(name),
        (c) =>
          c.status?.conditions?.some((x) => x.type === 'PodReplaced' && x.reason === 'PodDeleted') ?? false,
      );
      expect(kase.status?.conditions?.find((c) => c.type === 'Contained')?.status).not.toBe('True');
      const node = await waitFor(
        'node no longer lists the case',
        () => w.core.readNode({ name: 'node-c' }),
        (n) => !listed(n),
      );
      expect(listed(node)).toBe(false);
      expect((kase.status?.timeline ?? []).map((e) => e.action)).toContain('ReleaseNode');
    } finally {
      await fresh.stop();
    }
  });
  it('retries a 409 conflict quietly and converges', async () => {
    const opKc = await operatorKubeConfig(cluster);
    const pod = await podInOwnNamespace('crash-conflict');
    const podName = pod.metadata!.name!;
    let touched = false;
    const op = await startCaseController(opKc, {
      // Someone else changes the pod between the reconciler's read and its label patch.
      afterStep: async (s, kase) => {
        if (kase === 'conflict-case' && s === 'network-policy' && !touched) {
          touched = true;
          await w.core.patchNamespacedPod(
            {
              namespace: 'crash-conflict',
              name: podName,
              body: { metadata: { annotations: { 'example.com/touched': 'yes' } } },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        }
      },
    });
    try {
      await w.createCase('conflict-case', {
        target: { namespace: 'crash-conflict', pod: podName },
        reason: 'conflict test',
      });
      const kase = await w.waitForPhase('conflict-case', 'Contained');
      expect(touched).toBe(true);
      expect((kase.status?.timeline ?? []).map((e) => e.action)).toEqual([
        'IsolateNetwork',
        'LabelPod',
        'ContainNode',
      ]);
      const metrics = await op.registry.getSingleMetricAsString('amber_reconcile_total');
      expect(metrics).toMatch(/result="conflict"[^\n]* [1-9]/);
      expect(metrics).not.toMatch(/result="error"/);
    } finally {
      await op.stop();
    }
  });
});
