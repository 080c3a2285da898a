// ForensicCase created -> Contained (NetworkPolicy, pod labels, node held), on a real
// kube-apiserver + kube-controller-manager + kwok, the controller running as its ServiceAccount.
// Run: npx tsx bench/containment.ts [sequential=20] [burst=100]
import type { KubernetesObject } from '@kubernetes/client-node';
import { API_VERSION } from '../src/api/common.js';
import { CASE_LABEL } from '../src/containment/labels.js';
import type { ForensicCase } from '../src/api/forensiccase.js';
import { silentLogger } from '../src/observability/logger.js';
import { Informer, apiListWatch } from '../src/runtime/informer.js';
import { startCluster } from '../test/testenv/kube.js';
import { startCaseController } from '../test/testenv/operator.js';
import { operatorKubeConfig } from '../test/testenv/rbac.js';
import { benchWorkload } from './cluster.js';
import { summary } from './stats.js';

const sequential = Number(process.argv[2] ?? 20);
const burst = Number(process.argv[3] ?? 100);

const cluster = await startCluster({ controllerManager: true, kwok: true });
try {
  const admin = cluster.kubeConfig();
  const w = await benchWorkload(cluster, sequential + burst);

  const contained = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  const cases = new Informer<ForensicCase & KubernetesObject>(
    apiListWatch(admin, `/apis/${API_VERSION}/forensiccases`),
    { logger: silentLogger },
  );
  const seen = (c: ForensicCase) => {
    if (
      c.status?.conditions?.some((x) => x.type === 'Contained' && x.status === 'True') &&
      !contained.has(c.metadata.name)
    ) {
      contained.set(c.metadata.name, performance.now());
      waiters.get(c.metadata.name)?.();
    }
  };
  cases.addHandler({ onAdd: seen, onUpdate: (_o, n) => seen(n) });
  cases.start();
  await cases.waitForSync();

  // Isolated = the quarantine label is on the pod; the NetworkPolicy selecting it is created first.
  const isolated = new Map<string, number>();
  const pods = new Informer(
    apiListWatch(admin, '/api/v1/namespaces/shop/pods', { labelSelector: CASE_LABEL }),
    { logger: silentLogger },
  );
  const podSeen = (p: KubernetesObject) => {
    const kase = p.metadata?.labels?.[CASE_LABEL];
    if (kase && !isolated.has(kase)) isolated.set(kase, performance.now());
  };
  pods.addHandler({ onAdd: podSeen, onUpdate: (_o, n) => podSeen(n) });
  pods.start();
  await pods.waitForSync();

  const operator = await startCaseController(await operatorKubeConfig(cluster));
  const podNames = (await w.core.listNamespacedPod({ namespace: 'shop' })).items.map(
    (p) => p.metadata!.name!,
  );
  const started = new Map<string, number>();

  async function run(name: string, pod: string): Promise<number> {
    const done = new Promise<void>((resolve) => waiters.set(name, resolve));
    const start = performance.now();
    started.set(name, start);
    await w.createCase(name, { target: { namespace: 'shop', pod }, reason: 'benchmark' });
    await done;
    return contained.get(name)! - start;
  }

  const one: number[] = [];
  for (let i = 0; i < sequential; i++) one.push(await run(`seq-${i}`, podNames[i]!));
  const t0 = performance.now();
  const many = await Promise.all(
    Array.from({ length: burst }, (_, i) => run(`burst-${i}`, podNames[sequential + i]!)),
  );
  const wall = performance.now() - t0;

  const isolation = (prefix: string) =>
    [...started].filter(([n]) => n.startsWith(prefix)).map(([n, t]) => isolated.get(n)! - t);
  console.log(summary(`created -> isolated (NetworkPolicy + labels), 1 case at a time`, isolation('seq-')));
  console.log(
    summary(`created -> isolated (NetworkPolicy + labels), ${burst} cases at once`, isolation('burst-')),
  );
  console.log(summary(`created -> Contained, 1 case at a time`, one));
  console.log(summary(`created -> Contained, ${burst} cases at once`, many));
  console.log(`${burst} cases at once: all contained after ${wall.toFixed(0)} ms`);
  if (process.env.BENCH_DEBUG) {
    console.log(await operator.registry.getSingleMetricAsString('amber_reconcile_total'));
    const d = await operator.registry.getSingleMetricAsString('amber_reconcile_duration_seconds');
    console.log(
      d
        .split('\n')
        .filter((l) => /_sum|_count/.test(l))
        .join('\n'),
    );
  }
  await operator.stop();
  await cases.stop();
  await pods.stop();
} finally {
  await cluster.stop();
}
