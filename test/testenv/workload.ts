import { AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../src/api/common.js';
import { waitFor } from './wait.js';

/** Fixtures for case tests: kwok nodes, a ReplicaSet with a Service, and ForensicCases. */
export class Workloads {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async node(name: string): Promise<void> {
    await this.core.createNode({
      body: {
        metadata: {
          name,
          annotations: { 'kwok.x-k8s.io/node': 'fake' },
          labels: { 'kubernetes.io/hostname': name },
        },
        spec: {},
      },
    });
  }

  async namespace(name: string): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name } } });
  }

  /** A ReplicaSet of `replicas` pods on `node`, and a Service selecting them; resolves with the running pods. */
  async replicaSet(namespace: string, app: string, node: string, replicas = 2): Promise<V1Pod[]> {
    await this.core.createNamespacedService({
      namespace,
      body: { metadata: { name: app }, spec: { selector: { app }, ports: [{ port: 80 }] } },
    });
    await this.apps.createNamespacedReplicaSet({
      namespace,
      body: {
        metadata: { name: app },
        spec: {
          replicas,
          selector: { matchLabels: { app } },
          template: {
            metadata: { labels: { app, team: 'payments' } },
            spec: {
              nodeName: node,
              containers: [
                { name: 'main', image: 'example.invalid/app:1' },
                { name: 'sidecar', image: 'example.invalid/proxy:1' },
              ],
            },
          },
        },
      },
    });
    return this.runningPods(namespace, `app=${app}`, replicas);
  }

  async runningPods(namespace: string, labelSelector: string, count: number): Promise<V1Pod[]> {
    const list = await waitFor(
      `${count} running pods ${labelSelector}`,
      () => this.core.listNamespacedPod({ namespace, labelSelector }),
      (l) =>
        l.items.filter((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp).length ===
        count,
      60_000,
    );
    return list.items.filter((p) => p.status?.phase === 'Running');
  }

  async createCase(name: string, spec: Record<string, unknown>): Promise<void> {
    await this.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'forensiccases',
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'ForensicCase', metadata: { name }, spec },
    });
  }

  async getCase(name: string): Promise<CaseView> {
    return (await this.custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'forensiccases',
      name,
    })) as CaseView;
  }

  waitForPhase(name: string, phase: string, timeoutMs = 30_000): Promise<CaseView> {
    return waitFor(
      `case ${name} phase ${phase}`,
      () => this.getCase(name),
      (c) => c.status?.phase === phase,
      timeoutMs,
    );
  }

  async patchCaseSpec(name: string, spec: Record<string, unknown>): Promise<void> {
    const { PatchStrategy, setHeaderOptions } = await import('@kubernetes/client-node');
    await this.custom.patchClusterCustomObject(
      { group: GROUP, version: VERSION, plural: 'forensiccases', name, body: { spec } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

export interface CaseView {
  metadata: { name: string; uid: string; finalizers?: string[]; generation: number };
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    node?: string;
    observedGeneration?: number;
    conditions?: Array<{
      type: string;
      status: string;
      reason: string;
      message: string;
      observedGeneration?: number;
    }>;
    timeline?: Array<{ action: string; outcome: string; message?: string }>;
    containers?: Array<{ name: string; id: string; runtime: string }>;
  };
}
