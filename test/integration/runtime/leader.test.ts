import { CoordinationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { LeaderElector, type LeaderElectionOptions } from '../../../src/runtime/leader.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { CuttableProxy } from '../../testenv/proxy.js';
import { serverPort, viaPort } from './helpers.js';

const ns = 'runtime-leader';
let cluster: Cluster;
let kc: KubeConfig;
let leases: CoordinationV1Api;

beforeAll(async () => {
  cluster = await startCluster();
  kc = cluster.kubeConfig();
  leases = kc.makeApiClient(CoordinationV1Api);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await cluster?.stop();
});

/** Short durations so that a takeover happens within seconds. */
const timing = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 250 };

/**
 * Replicas that log every leadership change on one shared timeline; `overlaps` counts the
 * moments at which two of them believed they led.
 */
function replicas(name: string) {
  const timeline: string[] = [];
  const leading = new Set<string>();
  const electors: LeaderElector[] = [];
  let overlaps = 0;
  const add = (id: string, kubeConfig: KubeConfig) => {
    const opts: LeaderElectionOptions = {
      kubeConfig,
      namespace: ns,
      name,
      identity: id,
      logger: silentLogger,
      ...timing,
    };
    const elector = new LeaderElector(opts);
    electors.push(elector);
    void elector.run({
      onStartedLeading: () => {
        if (leading.size > 0) overlaps++;
        leading.add(id);
        timeline.push(`${id} leads`);
      },
      onStoppedLeading: (reason) => {
        leading.delete(id);
        timeline.push(`${id} ${reason}`);
      },
    });
    return elector;
  };
  return { add, electors, timeline, leading, overlaps: () => overlaps };
}

async function holder(name: string): Promise<string | undefined> {
  return (await leases.readNamespacedLease({ name, namespace: ns })).spec?.holderIdentity;
}

describe('LeaderElector against a real API server', () => {
  it('exactly one of two replicas leads; the other takes over at once when it releases', async () => {
    const { add, electors, timeline, leading, overlaps } = replicas('release');
    add('a', kc);
    add('b', kc);
    await vi.waitFor(() => expect(leading.size).toBe(1), { timeout: 10_000 });
    const [first] = [...leading];
    const firstElector = electors.find((e) => e.identity === first)!;
    const other = electors.find((e) => e.identity !== first)!;
    expect(await holder('release')).toBe(first);

    // Several renew periods: the leader keeps the lease, the other never leads.
    await new Promise((r) => setTimeout(r, 3 * timing.leaseDurationMs));
    expect(timeline).toEqual([`${first} leads`]);
    expect(await holder('release')).toBe(first);
    const transitionsBefore = (await leases.readNamespacedLease({ name: 'release', namespace: ns })).spec
      ?.leaseTransitions;

    await firstElector.stop();
    expect(firstElector.isLeader()).toBe(false);
    await vi.waitFor(() => expect(other.isLeader()).toBe(true), { timeout: 10_000 });
    expect(timeline).toEqual([`${first} leads`, `${first} released`, `${other.identity} leads`]);
    expect(await holder('release')).toBe(other.identity);
    const lease = await leases.readNamespacedLease({ name: 'release', namespace: ns });
    expect(lease.spec?.leaseTransitions).toBe((transitionsBefore ?? 0) + 1);
    expect(overlaps()).toBe(0);

    await other.stop();
    expect(await holder('release')).toBeUndefined(); // released: holder cleared
  });

  it('a leader cut off from the API server stops leading before the other takes over', async () => {
    const proxyA = await CuttableProxy.start(serverPort(kc));
    try {
      const { add, timeline, leading, overlaps } = replicas('cutoff');
      const a = add('a', viaPort(kc, proxyA.port));
      await vi.waitFor(() => expect(leading.has('a')).toBe(true), { timeout: 10_000 });
      const b = add('b', kc);
      await new Promise((r) => setTimeout(r, timing.leaseDurationMs));
      expect(b.isLeader()).toBe(false);

      proxyA.cut(); // a can no longer renew; it must give up on its own
      await vi.waitFor(() => expect(b.isLeader()).toBe(true), { timeout: 15_000 });
      // a stopped leading (on its own clock) before b started: never two leaders.
      expect(timeline).toEqual(['a leads', 'a lost', 'b leads']);
      expect(overlaps()).toBe(0);
      expect(a.isLeader()).toBe(false);
      expect(await holder('cutoff')).toBe('b');

      await a.stop();
      await b.stop();
    } finally {
      await proxyA.close();
    }
  });

  it('three replicas started together: exactly one leads', async () => {
    const { add, electors, leading, timeline } = replicas('race');
    for (const id of ['x', 'y', 'z']) add(id, kc);
    await vi.waitFor(() => expect(leading.size).toBe(1), { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, timing.leaseDurationMs));
    expect(timeline).toHaveLength(1);
    expect(electors.filter((e) => e.isLeader())).toHaveLength(1);
    await Promise.all(electors.map((e) => e.stop()));
  });
});
