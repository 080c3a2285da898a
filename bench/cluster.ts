import { installCrds } from '../test/testenv/crds.js';
import type { Cluster } from '../test/testenv/kube.js';
import { Workloads } from '../test/testenv/workload.js';

/**
 * The workload the containment benchmarks act on: `nodes` kwok nodes, each with a ReplicaSet,
 * `pods` running pods in namespace shop in all, and Amber's CRDs installed.
 */
export async function benchWorkload(cluster: Cluster, pods: number, nodes = 10): Promise<Workloads> {
  const admin = cluster.kubeConfig();
  await installCrds(admin);
  const w = new Workloads(admin);
  await w.namespace('shop');
  for (let i = 0; i < nodes; i++) await w.node(`node-${i}`);
  const perNode = Math.ceil(pods / nodes);
  await Promise.all(
    Array.from({ length: nodes }, (_, i) => w.replicaSet('shop', `app-${i}`, `node-${i}`, perNode)),
  );
  return w;
}
