import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../testenv/kube.js';

describe('real control plane: etcd + kube-apiserver + kube-controller-manager + kwok', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
  });
  afterAll(async () => cluster?.stop());

  it('writes and reads a ConfigMap through @kubernetes/client-node', async () => {
    const core = cluster.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'smoke' }, data: { evidence: 'kept' } },
    });
    const read = await core.readNamespacedConfigMap({ namespace: 'default', name: 'smoke' });
    expect(read.data).toEqual({ evidence: 'kept' });
    expect(read.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('turns a ReplicaSet into Pods that kwok runs on a fake node', async () => {
    const kc = cluster.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    await core.createNode({
      body: {
        metadata: {
          name: 'node-a',
          annotations: { 'kwok.x-k8s.io/node': 'fake' },
          labels: { 'kubernetes.io/hostname': 'node-a' },
        },
        spec: {},
      },
    });
    await apps.createNamespacedReplicaSet({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { nodeName: 'node-a', containers: [{ name: 'web', image: 'example.invalid/web:1' }] },
          },
        },
      },
    });
    let running: string[] = [];
    for (let i = 0; i < 300 && running.length < 2; i++) {
      const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
      running = pods.items.filter((p) => p.status?.phase === 'Running').map((p) => p.metadata!.name!);
      if (running.length < 2) await sleep(100);
    }
    expect(running).toHaveLength(2);
    const node = await core.readNode({ name: 'node-a' });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  });
});
