import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { Controller } from '../../../src/runtime/controller.js';
import { Informer, apiListWatch } from '../../../src/runtime/informer.js';
import { Manager } from '../../../src/runtime/manager.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';

const ns = 'runtime-manager';
let cluster: Cluster;
let kc: KubeConfig;

beforeAll(async () => {
  cluster = await startCluster();
  kc = cluster.kubeConfig();
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await cluster?.stop();
});

/** One operator replica: a ConfigMap informer and a controller that records what it reconciled. */
function replica(id: string, reconciled: string[]) {
  const informer = new Informer(apiListWatch(kc, `/api/v1/namespaces/${ns}/configmaps`), {
    logger: silentLogger,
  });
  const controller = new Controller({
    name: 'configmaps',
    logger: silentLogger,
    registry: createRegistry(),
    reconcile: async (key) => void reconciled.push(`${id} ${key}`),
  });
  controller.watch(informer);
  const exits: number[] = [];
  const manager = new Manager({
    logger: silentLogger,
    exit: (code) => exits.push(code),
    leaderElection: {
      kubeConfig: kc,
      namespace: ns,
      name: 'amber-operator',
      identity: id,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 250,
    },
  });
  manager.addInformer(informer);
  manager.addController(controller);
  return { manager, exits };
}

describe('Manager with leader election', () => {
  it('only the leader reconciles; on graceful stop the follower takes over with a warm queue', async () => {
    const reconciled: string[] = [];
    const a = replica('a', reconciled);
    await a.manager.start();
    expect(a.manager.ready()).toBe(true);
    await vi.waitFor(() => expect(a.manager.isLeader()).toBe(true), { timeout: 10_000 });
    const b = replica('b', reconciled);
    await b.manager.start();
    expect(b.manager.ready()).toBe(true); // a follower with a synced cache is ready
    expect(b.manager.isLeader()).toBe(false);

    await kc
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'cm' } } });
    await vi.waitFor(() => expect(reconciled).toContain(`a ${ns}/cm`));
    expect(reconciled.filter((r) => r.startsWith('b '))).toEqual([]);

    await a.manager.stop();
    // b had queued the key while following; it reconciles it as soon as it leads.
    await vi.waitFor(() => expect(reconciled).toContain(`b ${ns}/cm`), { timeout: 10_000 });
    expect(b.manager.isLeader()).toBe(true);
    await b.manager.stop();
    expect([...a.exits, ...b.exits]).toEqual([]);
  });
});
