// Falco alert received -> pod isolated (deny-all NetworkPolicy + quarantine labels), through the
// whole operator (runOperator: webhook, intake, case controller) on a real kube-apiserver +
// kube-controller-manager + kwok, running as its ServiceAccount; alerts posted over HTTP the way
// Falcosidekick posts them. Run: npx tsx bench/alert-to-isolated.ts [sequential=20] [burst=100]
import type { KubernetesObject } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_VERSION } from '../src/api/common.js';
import { CASE_LABEL } from '../src/containment/labels.js';
import { createLogger, silentLogger } from '../src/observability/logger.js';
import { OperatorConfig } from '../src/operator/config.js';
import { runOperator } from '../src/operator/operator.js';
import { Informer, apiListWatch } from '../src/runtime/informer.js';
import { postLikeFalcosidekick } from '../test/testenv/falcosidekick.js';
import { startCluster } from '../test/testenv/kube.js';
import { freePort } from '../test/testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeconfigFile } from '../test/testenv/rbac.js';
import { benchWorkload } from './cluster.js';
import { summary } from './stats.js';

const sequential = Number(process.argv[2] ?? 20);
const burst = Number(process.argv[3] ?? 100);
const fixture = readFileSync(
  join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);

const cluster = await startCluster({ controllerManager: true, kwok: true });
try {
  const admin = cluster.kubeConfig();
  const w = await benchWorkload(cluster, sequential + burst);
  await w.custom.createClusterCustomObject({
    group: 'forensics.amber.io',
    version: 'v1alpha1',
    plural: 'responsepolicies',
    body: {
      apiVersion: API_VERSION,
      kind: 'ResponsePolicy',
      metadata: { name: 'bench' },
      spec: {
        limits: { maxOpenCases: 1000, maxCordonedNodes: 1000, maxCordonedNodesPercent: 100 },
        collection: { enabled: false },
      },
    },
  });

  const isolated = new Map<string, number>();
  const pods = new Informer(
    apiListWatch(admin, '/api/v1/namespaces/shop/pods', { labelSelector: CASE_LABEL }),
    { logger: silentLogger },
  );
  const waiters = new Map<string, () => void>();
  const seen = (p: KubernetesObject) => {
    const name = p.metadata!.name!;
    if (!isolated.has(name)) {
      isolated.set(name, performance.now());
      waiters.get(name)?.();
    }
  };
  pods.addHandler({ onAdd: seen, onUpdate: (_o, n) => seen(n) });
  pods.start();
  await pods.waitForSync();

  // When each case appeared on the API server, to split the latency into intake and controller.
  const opened = new Map<string, number>();
  const cases = new Informer(apiListWatch(admin, `/apis/${API_VERSION}/forensiccases`), {
    logger: silentLogger,
  });
  cases.addHandler({
    onAdd: (c) => {
      const pod = (c as { spec?: { target?: { pod?: string } } }).spec?.target?.pod;
      if (pod && !opened.has(pod)) opened.set(pod, performance.now());
    },
  });
  cases.start();
  await cases.waitForSync();

  const kubeconfig = await operatorKubeconfigFile(cluster);
  const token = randomBytes(16).toString('hex');
  const logger = createLogger({ component: 'operator' });
  logger.level = process.env.AMBER_LOG_LEVEL ?? 'error';
  const operator = await runOperator(
    OperatorConfig.parse({
      kubeconfig,
      namespace: OPERATOR_NAMESPACE,
      metricsPort: await freePort(),
      intakePort: await freePort(),
      intakeToken: token,
      collectionMode: 'off',
      maxOpenCases: 1000,
      maxCordonedNodes: 1000,
      maxCordonedNodesPercent: 100,
    }),
    logger,
  );
  const url = operator.intake!.url;
  // Wait for leadership: a follower's alerts would wait for the leader's reconcile anyway.
  while (!operator.manager.isLeader()) await new Promise((r) => setTimeout(r, 50));

  const podNames = (await w.core.listNamespacedPod({ namespace: 'shop' })).items.map(
    (p) => p.metadata!.name!,
  );
  const sent = new Map<string, number>();
  async function alert(pod: string): Promise<number> {
    const done = new Promise<void>((resolve) => waiters.set(pod, resolve));
    const start = performance.now();
    sent.set(pod, start);
    const res = await postLikeFalcosidekick(
      url,
      fixture.replaceAll('"default"', '"shop"').replaceAll('"alpine"', `"${pod}"`),
      { Authorization: `Bearer ${token}` },
    );
    if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${res.body}`);
    await done;
    return isolated.get(pod)! - start;
  }

  const one: number[] = [];
  for (let i = 0; i < sequential; i++) one.push(await alert(podNames[i]!));
  const t0 = performance.now();
  const many = await Promise.all(Array.from({ length: burst }, (_, i) => alert(podNames[sequential + i]!)));
  console.log(summary('alert -> pod isolated, 1 alert at a time', one));
  console.log(summary(`alert -> pod isolated, ${burst} pods alerted at once`, many));
  const burstPods = podNames.slice(sequential, sequential + burst);
  console.log(
    summary(
      `  of which alert -> case on the API server`,
      burstPods.map((p) => opened.get(p)! - sent.get(p)!),
    ),
  );
  console.log(
    summary(
      `  of which case on the API server -> pod isolated`,
      burstPods.map((p) => isolated.get(p)! - opened.get(p)!),
    ),
  );
  console.log(`${burst} pods alerted at once: all isolated after ${(performance.now() - t0).toFixed(0)} ms`);
  await operator.stop();
  await pods.stop();
  await cases.stop();
} finally {
  await cluster.stop();
}
