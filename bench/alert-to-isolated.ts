// Falco alert received -> pod isolated, through the whole operator (runOperator: webhook, intake,
// case controller) on a real kube-apiserver + kube-controller-manager + kwok, running as its
// ServiceAccount; alerts posted over HTTP the way Falcosidekick posts them. A pod counts as
// isolated when a deny-all (ingress and egress) NetworkPolicy of its namespace selects it, as the
// API server has both. API writes are counted from the API server's audit log: per pod, the
// writes to its own objects (pod, case, the case's policy) answered before it was isolated, and
// in total every write the operator made. Run: npx tsx bench/alert-to-isolated.ts [sequential=20] [burst=100]
import type { KubernetesObject, V1NetworkPolicy, V1Pod } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION } from '../src/api/common.js';
import { STANDING_POLICY_NAME, networkPolicyName } from '../src/containment/labels.js';
import { selectorMatches } from '../src/containment/pod.js';
import { caseNameFor } from '../src/intake/cases.js';
import { createLogger, silentLogger } from '../src/observability/logger.js';
import { OperatorConfig } from '../src/operator/config.js';
import { runOperator } from '../src/operator/operator.js';
import { Informer, apiListWatch } from '../src/runtime/informer.js';
import { postLikeFalcosidekick } from '../test/testenv/falcosidekick.js';
import { startCluster } from '../test/testenv/kube.js';
import { freePort } from '../test/testenv/ports.js';
import { OPERATOR_NAMESPACE, OPERATOR_USER, operatorKubeconfigFile } from '../test/testenv/rbac.js';
import { byKind, readAuditWrites, type AuditWrite } from './api-writes.js';
import { benchWorkload } from './cluster.js';
import { percentile, summary } from './stats.js';

const sequential = Number(process.argv[2] ?? 20);
const burst = Number(process.argv[3] ?? 100);
const fixture = readFileSync(
  join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);

const cluster = await startCluster({ controllerManager: true, kwok: true, auditLog: true });
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

  // When each pod was first seen isolated (Date.now(), comparable with the audit log's times).
  const isolated = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  const podInformer = new Informer<V1Pod & KubernetesObject>(
    apiListWatch(admin, '/api/v1/namespaces/shop/pods'),
    { logger: silentLogger },
  );
  const policyInformer = new Informer<V1NetworkPolicy & KubernetesObject>(
    apiListWatch(admin, '/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies'),
    { logger: silentLogger },
  );
  const denyAll = (p: V1NetworkPolicy) =>
    ['Ingress', 'Egress'].every((t) => p.spec?.policyTypes?.includes(t)) &&
    !p.spec?.ingress?.length &&
    !p.spec?.egress?.length;
  const check = () => {
    const policies = policyInformer.list().filter(denyAll);
    for (const pod of podInformer.list()) {
      const name = pod.metadata!.name!;
      if (isolated.has(name)) continue;
      const labels = pod.metadata?.labels ?? {};
      if (policies.some((p) => selectorMatches(p.spec?.podSelector, labels))) {
        isolated.set(name, Date.now());
        waiters.get(name)?.();
      }
    }
  };
  for (const inf of [podInformer, policyInformer] as Informer<KubernetesObject>[]) {
    inf.addHandler({ onAdd: check, onUpdate: check });
    inf.start();
    await inf.waitForSync();
  }

  // When each case appeared on the API server, to split the latency into intake and controller.
  const opened = new Map<string, number>();
  // Cases whose Contained condition is True: the burst's writes are counted once all are.
  const contained = new Set<string>();
  let allContained: (() => void) | undefined;
  type CaseView = {
    spec?: { target?: { pod?: string } };
    status?: { conditions?: { type: string; status: string }[] };
  };
  const cases = new Informer(apiListWatch(admin, `/apis/${API_VERSION}/forensiccases`), {
    logger: silentLogger,
  });
  const caseSeen = (c: KubernetesObject) => {
    const pod = (c as CaseView).spec?.target?.pod;
    if (!pod) return;
    if (!opened.has(pod)) opened.set(pod, Date.now());
    if ((c as CaseView).status?.conditions?.some((x) => x.type === 'Contained' && x.status === 'True')) {
      contained.add(pod);
      allContained?.();
    }
  };
  cases.addHandler({ onAdd: caseSeen, onUpdate: (_o, n) => caseSeen(n) });
  cases.start();
  await cases.waitForSync();

  const kubeconfig = await operatorKubeconfigFile(cluster);
  const token = randomBytes(16).toString('hex');
  // As deployed: the intake answers 202 once the alert is in its write-ahead log.
  const walDir = mkdtempSync(join(tmpdir(), 'amber-bench-wal-'));
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
      walDir,
      walName: 'bench',
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
    const start = Date.now();
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
  const t0 = Date.now();
  const many = await Promise.all(Array.from({ length: burst }, (_, i) => alert(podNames[sequential + i]!)));
  const tAll = Date.now();
  const burstPods = podNames.slice(sequential, sequential + burst);
  // Everything the burst leads to (status, Events, node holds) is written by the time every case
  // says Contained; a second more lets the last writes land in the log.
  await new Promise<void>((resolve) => {
    allContained = () => burstPods.every((p) => contained.has(p)) && resolve();
    allContained();
  });
  await new Promise((r) => setTimeout(r, 1000));

  console.log(summary('alert -> pod isolated, 1 alert at a time', one));
  console.log(summary(`alert -> pod isolated, ${burst} pods alerted at once`, many));
  console.log(
    summary(
      `  of which alert -> case on the API server`,
      burstPods.map((p) => opened.get(p)! - sent.get(p)!),
    ),
  );
  console.log(
    summary(
      `  of which case on the API server -> pod isolated (negative: isolated first)`,
      burstPods.map((p) => isolated.get(p)! - opened.get(p)!),
    ),
  );
  console.log(`${burst} pods alerted at once: all isolated after ${(tAll - t0).toFixed(0)} ms`);

  const writes = readAuditWrites(cluster.auditLogPath).filter((w) => w.user === OPERATOR_USER);
  const objectsOf = (pod: string) => {
    const kase = caseNameFor({ namespace: 'shop', pod });
    return (w: AuditWrite) =>
      (w.resource === 'pods' && w.namespace === 'shop' && w.name === pod) ||
      (w.resource === 'forensiccases' && w.name === kase) ||
      (w.resource === 'networkpolicies' && w.name === networkPolicyName(kase));
  };
  // The write that isolated a pod, as the API server received it: the later of the first
  // successful label patch of the pod and the first successful create of a policy that selects
  // it (the case's own policy before ADR 0025, the namespace's standing one after). A write
  // received after it counts as after isolation even if a watcher saw the pod isolated later.
  const isolatingWrite = (pod: string, from: number) => {
    const kase = caseNameFor({ namespace: 'shop', pod });
    const ok = writes.filter((w) => w.at >= from && w.code < 400);
    const patch = ok.find((w) => w.resource === 'pods' && w.name === pod && w.verb === 'patch');
    const policy = ok.find(
      (w) =>
        w.resource === 'networkpolicies' &&
        w.verb === 'create' &&
        (w.name === networkPolicyName(kase) || w.name === STANDING_POLICY_NAME),
    );
    // The standing policy may predate the window (created for an earlier pod).
    const standingBefore = writes.some(
      (w) =>
        w.resource === 'networkpolicies' && w.name === STANDING_POLICY_NAME && w.code < 400 && w.at < from,
    );
    if (!patch || (!policy && !standingBefore)) return isolated.get(pod)!;
    return Math.max(patch.at, policy && !standingBefore ? policy.at : 0);
  };
  const ownWrites = (pods: string[], from: number) =>
    pods.map((p) => {
      const until = isolatingWrite(p, from);
      return writes.filter((w) => w.at >= from && w.at <= until && objectsOf(p)(w));
    });
  const report = (label: string, pods: string[], from: number, to: number) => {
    const before = ownWrites(pods, from);
    const counts = before.map((b) => b.length);
    const inWindow = writes.filter((w) => w.at >= from && w.at <= to);
    const shared = inWindow.filter((w) => !pods.some((p) => objectsOf(p)(w)));
    const sharedBefore = shared.filter((w) => w.at <= Math.max(...pods.map((p) => isolated.get(p)!)));
    console.log(
      `${label}: API writes per pod until isolated p50=${percentile(counts, 50)} max=${Math.max(...counts)}` +
        ` (${byKind(before.flat())
          .map(([k, n]) => `${k} ${(n / pods.length).toFixed(2)}`)
          .join(', ')}); shared before the last isolation: ${sharedBefore.length}` +
        (sharedBefore.length
          ? ` (${byKind(sharedBefore)
              .map(([k, n]) => `${k} ${n}`)
              .join(', ')})`
          : ''),
    );
    console.log(
      `${label}: API writes in total ${inWindow.length} = ${(inWindow.length / pods.length).toFixed(2)} per pod` +
        ` (${byKind(inWindow)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')})`,
    );
  };
  report('1 at a time', podNames.slice(0, sequential), 0, t0 - 1);
  report(`${burst} at once`, burstPods, t0, Date.now());
  await operator.stop();
  rmSync(walDir, { recursive: true, force: true });
  await podInformer.stop();
  await policyInformer.stop();
  await cases.stop();
} finally {
  await cluster.stop();
}
