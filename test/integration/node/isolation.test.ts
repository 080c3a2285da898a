import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { RealNode, nodeUnavailable } from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads } from '../../testenv/workload.js';

const unavailable = nodeUnavailable();
if (unavailable) console.warn(`SKIPPED test/integration/node/isolation.test.ts: ${unavailable}`);

/** Every pod listens on 8080 and answers "pong" to each new connection. */
const SERVER = ['nc', '-ll', '-p', '8080', '-e', 'echo', 'pong'];

describe.skipIf(unavailable)('containment enforced on packets by a real node (kube-router)', () => {
  let cluster: Cluster;
  let node: RealNode;
  let pods: NodePods;
  let w: Workloads;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  const ip: Record<string, string> = {};

  /** A new TCP connection from pod `from` to pod `to`: true when it got its "pong". */
  const connects = async (from: string, to: string): Promise<boolean> => {
    const r = await pods.exec('shop', from, ['sh', '-c', `nc -w 2 ${ip[to]} 8080 </dev/null`]);
    return r.code === 0 && r.stdout === 'pong\n';
  };
  /** Polls until `connects(from, to)` is `want`; resolves with how long that took. */
  const until = async (from: string, to: string, want: boolean): Promise<number> => {
    const t0 = Date.now();
    await waitFor(
      `${from} -> ${to} ${want ? 'connects' : 'refused'}`,
      () => connects(from, to),
      (ok) => ok === want,
    );
    return Date.now() - t0;
  };

  beforeAll(async () => {
    cluster = await startCluster({ realNode: true });
    node = await RealNode.start(cluster);
    console.log('real node cold start', node.times);
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    pods = new NodePods(admin);
    w = new Workloads(admin);
    await w.namespace('shop');
    for (const name of ['suspect', 'peer', 'unrelated']) {
      const pod = await pods.run('shop', name, node.images.busybox!.ref, SERVER, {
        labels: { app: name, team: 'payments' },
      });
      ip[name] = pod.status!.podIP!;
    }
    operator = await startCaseController(await operatorKubeConfig(cluster));
  }, 20 * 60_000); // waits while another test file holds the node
  afterAll(async () => {
    await operator?.stop();
    await node?.stop();
    await cluster?.stop();
  }, 120_000);

  it('connects every pod to every other before containment', async () => {
    for (const [from, to] of [
      ['peer', 'suspect'],
      ['suspect', 'peer'],
      ['peer', 'unrelated'],
      ['unrelated', 'suspect'],
    ] as const)
      await until(from, to, true);
  });

  it('refuses new connections to and from the contained suspect, and only those; release restores them', async () => {
    const t0 = Date.now();
    await w.createCase('case-web', {
      target: { namespace: 'shop', pod: 'suspect' },
      reason: 'test: reverse shell in container',
    });
    await w.waitForPhase('case-web', 'Contained');
    const containedMs = Date.now() - t0;
    const inboundMs = await until('peer', 'suspect', false);
    const outboundMs = await until('suspect', 'peer', false);
    console.log(
      `containment: case Contained ${containedMs} ms after creation; new connections refused ` +
        `inbound ${inboundMs} ms and outbound ${inboundMs + outboundMs} ms after Contained`,
    );

    // Held, in both directions and from every pod, not a moment's flap.
    expect(await connects('peer', 'suspect')).toBe(false);
    expect(await connects('unrelated', 'suspect')).toBe(false);
    expect(await connects('suspect', 'peer')).toBe(false);
    expect(await connects('suspect', 'unrelated')).toBe(false);
    // The rest of the namespace is untouched.
    expect(await connects('peer', 'unrelated')).toBe(true);
    expect(await connects('unrelated', 'peer')).toBe(true);

    const r0 = Date.now();
    await w.patchCaseSpec('case-web', { release: true });
    await w.waitForPhase('case-web', 'Released');
    const releasedMs = Date.now() - r0;
    const backInMs = await until('peer', 'suspect', true);
    const backOutMs = await until('suspect', 'peer', true);
    console.log(
      `release: case Released ${releasedMs} ms after the request; connections restored inbound ` +
        `${backInMs} ms and outbound ${backInMs + backOutMs} ms after Released`,
    );
    expect(await connects('unrelated', 'suspect')).toBe(true);
  });
});
