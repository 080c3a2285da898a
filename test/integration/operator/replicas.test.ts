import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { OperatorConfig } from '../../../src/operator/config.js';
import { runOperator, type RunningOperator } from '../../../src/operator/operator.js';
import { installCrds } from '../../testenv/crds.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { OPERATOR_NAMESPACE, operatorKubeconfigFile } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * Two replicas of the real operator (runOperator: manager, leader election, case controller,
 * intake, metrics) on one cluster, as the operator's ServiceAccount. Both take alerts; only the
 * leader reconciles; when it stops, the other takes over.
 */
const token = randomBytes(16).toString('hex');
const fixture = readFileSync(
  join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);
const alertFor = (pod: string) =>
  fixture.replaceAll('"default"', '"shop"').replaceAll('"alpine"', `"${pod}"`);

async function reconciles(op: RunningOperator): Promise<number> {
  const text = await (await fetch(`${op.metricsUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('amber_reconcile_total{controller="forensiccase"'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

describe('two operator replicas', () => {
  let cluster: Cluster;
  let w: Workloads;
  let a: RunningOperator;
  let b: RunningOperator;

  beforeAll(async () => {
    cluster = await startCluster({ controllerManager: true, kwok: true });
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    await w.node('node-a');
    await w.namespace('shop');
    await w.replicaSet('shop', 'web', 'node-a', 2);
    await w.custom.createClusterCustomObject({
      group: 'forensics.amber.io',
      version: 'v1alpha1',
      plural: 'responsepolicies',
      body: {
        apiVersion: 'forensics.amber.io/v1alpha1',
        kind: 'ResponsePolicy',
        metadata: { name: 'shells' },
        spec: { collection: { enabled: false } },
      },
    });
    const kubeconfig = await operatorKubeconfigFile(cluster);
    const start = async () =>
      runOperator(
        OperatorConfig.parse({
          kubeconfig,
          namespace: OPERATOR_NAMESPACE,
          metricsPort: await freePort(),
          intakePort: await freePort(),
          intakeToken: token,
          collectionMode: 'off',
        }),
        silentLogger,
        { exit: () => {} },
      );
    a = await start();
    b = await start();
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await cluster?.stop();
  });

  it('is ready on both, acts on one, and the other takes over when the leader stops', async () => {
    for (const op of [a, b]) expect((await fetch(`${op.metricsUrl}/readyz`)).status).toBe(200);
    await waitFor(
      'a leader',
      async () => [a.manager.isLeader(), b.manager.isLeader()],
      (l) => l.filter(Boolean).length === 1,
    );
    const [leader, follower] = a.manager.isLeader() ? [a, b] : [b, a];

    // The follower's webhook takes the alert; the leader contains.
    const pods = await w.runningPods('shop', 'app=web', 2);
    const res = await postLikeFalcosidekick(follower.intake!.url, alertFor(pods[0]!.metadata!.name!), {
      Authorization: `Bearer ${token}`,
    });
    expect(res.status).toBe(202);
    const first = (JSON.parse(res.body) as { case: string }).case;
    await w.waitForPhase(first, 'Contained');
    expect(await reconciles(leader)).toBeGreaterThan(0);
    expect(await reconciles(follower)).toBe(0);
    expect(follower.manager.isLeader()).toBe(false);

    // A graceful stop releases the lease: the follower leads at once and contains the next pod.
    await leader.stop();
    await waitFor(
      'takeover',
      async () => follower.manager.isLeader(),
      (l) => l,
      20_000,
    );
    const [next] = (await w.runningPods('shop', 'app=web', 2)).filter(
      (p) => !p.metadata?.labels?.['forensics.amber.io/case'],
    );
    const res2 = await postLikeFalcosidekick(follower.intake!.url, alertFor(next!.metadata!.name!), {
      Authorization: `Bearer ${token}`,
    });
    await w.waitForPhase((JSON.parse(res2.body) as { case: string }).case, 'Contained');
    expect(await reconciles(follower)).toBeGreaterThan(0);
  });
});
