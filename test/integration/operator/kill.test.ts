import { NetworkingV1Api } from '@kubernetes/client-node';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CASE_LABEL, NODE_HOLDERS_ANNOTATION } from '../../../src/containment/labels.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { ManagedProcess } from '../../testenv/process.js';
import { OPERATOR_NAMESPACE, operatorKubeconfigFile } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * `amber operator` as a real process, killed with SIGKILL while it works through a batch of
 * cases, and started again; twice. Every case must end contained exactly once.
 */
describe('amber operator killed mid-work and restarted', () => {
  let cluster: Cluster;
  let w: Workloads;
  let kubeconfig: string;
  const cases = 12;

  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.node('node-k');
    await w.namespace('shop');
    await w.replicaSet('shop', 'api', 'node-k', cases);
    kubeconfig = await operatorKubeconfigFile(cluster);
  });
  afterAll(async () => cluster?.stop());

  async function startOperator(run: number): Promise<ManagedProcess> {
    const p = ManagedProcess.start(
      `amber-operator-${run}`,
      'npx',
      [
        'tsx',
        join(import.meta.dirname, '..', '..', '..', 'src', 'cmd', 'amber.ts'),
        'operator',
        '--kubeconfig',
        kubeconfig,
        '--no-leader-election',
        '--metrics-port',
        String(await freePort()),
      ],
      {
        logFile: join(cluster.dir, `operator-${run}.log`),
        env: { AMBER_COLLECTION_MODE: 'off', AMBER_NAMESPACE: OPERATOR_NAMESPACE },
      },
    );
    await p.waitUntil(async () => p.logTail(50).includes('operator started'), 60_000);
    return p;
  }

  it('ends every case contained exactly once', async () => {
    const pods = await w.runningPods('shop', 'app=api', cases);
    let op = await startOperator(1);
    await Promise.all(
      pods.map((p, i) =>
        w.createCase(`kill-${i}`, {
          target: { namespace: 'shop', pod: p.metadata!.name! },
          reason: 'kill test',
        }),
      ),
    );
    // Kill it as soon as some, not all, cases are contained; then again on the next run.
    for (let run = 2; run <= 3; run++) {
      await waitFor(
        'some progress',
        async () =>
          (await w.core.listNamespacedPod({ namespace: 'shop', labelSelector: CASE_LABEL })).items.length,
        (n) => n > 0,
        30_000,
      );
      await op.kill();
      const labelled = (await w.core.listNamespacedPod({ namespace: 'shop', labelSelector: CASE_LABEL }))
        .items.length;
      console.log(`run ${run - 1} killed with ${labelled} of ${cases} pods labelled`);
      await sleep(200);
      op = await startOperator(run);
    }
    try {
      for (let i = 0; i < cases; i++) {
        const kase = await w.waitForPhase(`kill-${i}`, 'Contained', 60_000);
        expect(
          (kase.status?.timeline ?? []).map((e) => e.action),
          `kill-${i}`,
        ).toEqual(['IsolateNetwork', 'LabelPod', 'ContainNode']);
      }
      const policies = await cluster
        .kubeConfig()
        .makeApiClient(NetworkingV1Api)
        .listNamespacedNetworkPolicy({ namespace: 'shop' });
      expect(policies.items).toHaveLength(cases);
      const holders =
        (await w.core.readNode({ name: 'node-k' })).metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]?.split(
          ',',
        ) ?? [];
      expect(holders.sort()).toEqual(Array.from({ length: cases }, (_, i) => `kill-${i}`).sort());
    } finally {
      await op.stop();
    }
  });
});
