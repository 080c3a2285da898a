import { NetworkingV1Api } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  NODE_HOLDERS_ANNOTATION,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { ManagedProcess } from '../../testenv/process.js';
import { processInfo, processesWithEnv } from '../../testenv/procs.js';
import { OPERATOR_NAMESPACE, operatorKubeconfigFile } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

const INSTANCE_ENV = 'AMBER_TEST_OPERATOR_INSTANCE';

/**
 * `amber operator` as a real process, killed with SIGKILL while it works through a batch of
 * cases, and started again; twice. Every case must end contained exactly once.
 */
describe('amber operator killed mid-work and restarted', () => {
  let cluster: Cluster;
  let w: Workloads;
  let kubeconfig: string;
  const cases = 12;
  const repo = join(import.meta.dirname, '..', '..', '..');
  let running: { op: ManagedProcess; instance: string } | undefined;

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
  afterAll(async () => {
    await running?.op.stop();
    await cluster?.stop();
  });

  /**
   * node itself runs the operator (tsx as a loader, no npx or tsx wrapper process in between),
   * so the PID the test holds is the operator's. Its environment carries an ID of its own, by
   * which the test finds every process of this instance, whatever its parent became.
   */
  async function startOperator(run: number): Promise<{ op: ManagedProcess; instance: string }> {
    const instance = randomUUID();
    const op = ManagedProcess.start(
      `amber-operator-${run}`,
      process.execPath,
      [
        '--import',
        'tsx',
        join(repo, 'src', 'cmd', 'amber.ts'),
        'operator',
        '--kubeconfig',
        kubeconfig,
        '--no-leader-election',
        '--metrics-port',
        String(await freePort()),
      ],
      {
        cwd: repo,
        logFile: join(cluster.dir, `operator-${run}.log`),
        env: {
          AMBER_COLLECTION_MODE: 'off',
          AMBER_NAMESPACE: OPERATOR_NAMESPACE,
          [INSTANCE_ENV]: instance,
        },
      },
    );
    await op.waitUntil(async () => op.logTail(50).includes('operator started'), 60_000);
    const operatorProcess = processesWithEnv(INSTANCE_ENV, instance).find((p) =>
      p.args.includes('amber.ts operator'),
    );
    expect(operatorProcess?.pid, 'the process the test holds is the operator').toBe(op.pid);
    return { op, instance };
  }

  /** SIGKILL, then proof that no process of that operator instance is left to keep working. */
  async function crash(target: { op: ManagedProcess; instance: string }): Promise<void> {
    await target.op.kill();
    expect(processesWithEnv(INSTANCE_ENV, target.instance)).toEqual([]);
    expect(processInfo(target.op.pid)).toBeUndefined();
  }

  it('ends every case contained exactly once', async () => {
    const pods = await w.runningPods('shop', 'app=api', cases);
    running = await startOperator(1);
    await Promise.all(
      pods.map((p, i) =>
        w.createCase(`kill-${i}`, {
          target: { namespace: 'shop', pod: p.metadata!.name! },
          reason: 'kill test',
        }),
      ),
    );
    // Kill it as soon as it has made progress, then the next one as soon as it has made more
    // (or there is nothing left to do).
    let labelled = 0;
    for (let run = 2; run <= 3; run++) {
      const before = labelled;
      await waitFor(
        'progress',
        async () =>
          (await w.core.listNamespacedPod({ namespace: 'shop', labelSelector: CASE_LABEL })).items.length,
        (n) => n > before || n === cases,
        30_000,
      );
      await crash(running);
      labelled = (await w.core.listNamespacedPod({ namespace: 'shop', labelSelector: CASE_LABEL })).items
        .length;
      console.log(`run ${run - 1} killed with ${labelled} of ${cases} pods labelled`);
      running = await startOperator(run);
    }
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
    // One standing deny-all policy for the namespace (ADR 0025), created once whatever the
    // crashes, and every pod under it through its network-quarantine label.
    expect(policies.items.map((p) => p.metadata?.name)).toEqual([STANDING_POLICY_NAME]);
    const isolated = await w.core.listNamespacedPod({
      namespace: 'shop',
      labelSelector: NETWORK_QUARANTINE_LABEL,
    });
    expect(isolated.items).toHaveLength(cases);
    const holders =
      (await w.core.readNode({ name: 'node-k' })).metadata?.annotations?.[NODE_HOLDERS_ANNOTATION]?.split(
        ',',
      ) ?? [];
    expect(holders.sort()).toEqual(Array.from({ length: cases }, (_, i) => `kill-${i}`).sort());
  });
});
