import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { FORENSIC_CASE } from '../api/forensiccase.js';
import { RESPONSE_POLICY } from '../api/responsepolicy.js';
import { GROUP, VERSION } from '../api/common.js';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The API clients the case controllers use, and the merge-patch calls they need. */
export class KubeClients {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly batch: BatchV1Api;
  readonly networking: NetworkingV1Api;
  readonly custom: CustomObjectsApi;

  constructor(readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.batch = kc.makeApiClient(BatchV1Api);
    this.networking = kc.makeApiClient(NetworkingV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  getCase(name: string): Promise<unknown> {
    return this.custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: FORENSIC_CASE.plural,
      name,
    });
  }

  /** Every ForensicCase, read from the API server (not a cache), page by page. */
  async listCases(): Promise<unknown[]> {
    const items: unknown[] = [];
    let next: string | undefined;
    do {
      const page = (await this.custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: FORENSIC_CASE.plural,
        limit: 500,
        _continue: next,
      })) as { items?: unknown[]; metadata?: { continue?: string } };
      items.push(...(page.items ?? []));
      next = page.metadata?.continue || undefined;
    } while (next);
    return items;
  }

  getResponsePolicy(name: string): Promise<unknown> {
    return this.custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: RESPONSE_POLICY.plural,
      name,
    });
  }

  /**
   * Nodes in the cluster, without transferring them: the API server counts what a one-item page
   * leaves (remainingItemCount); only where it does not say, the names are paged through.
   */
  async countNodes(): Promise<number> {
    const first = await this.core.listNode({ limit: 1 });
    if (first.metadata?.remainingItemCount !== undefined)
      return first.items.length + first.metadata.remainingItemCount;
    let count = first.items.length;
    let next = first.metadata?._continue;
    while (next) {
      const page = await this.core.listNode({ limit: 500, _continue: next });
      count += page.items.length;
      next = page.metadata?._continue;
    }
    return count;
  }

  patchCase(name: string, body: object): Promise<unknown> {
    return this.custom.patchClusterCustomObject(
      { group: GROUP, version: VERSION, plural: FORENSIC_CASE.plural, name, body },
      mergePatch,
    );
  }

  patchCaseStatus(name: string, body: object): Promise<unknown> {
    return this.custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: FORENSIC_CASE.plural, name, body },
      mergePatch,
    );
  }

  patchPod(namespace: string, name: string, body: object) {
    return this.core.patchNamespacedPod({ namespace, name, body }, mergePatch);
  }

  patchNode(name: string, body: object) {
    return this.core.patchNode({ name, body }, mergePatch);
  }
}
