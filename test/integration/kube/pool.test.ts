import { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PooledKubeConfig } from '../../../src/kube/config.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { CuttableProxy } from '../../testenv/proxy.js';

let cluster: Cluster;
let proxy: CuttableProxy;

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await CuttableProxy.start(Number(new URL(cluster.server).port));
});

afterAll(async () => {
  await proxy?.close();
  await cluster?.stop();
});

/** `from`'s credentials, loaded into `into`, talking to the API server through the proxy. */
function via(from: KubeConfig, into: KubeConfig): KubeConfig {
  into.loadFromOptions({
    clusters: from.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
    users: from.users.map((u) => ({ ...u })),
    contexts: from.contexts,
    currentContext: from.currentContext,
  });
  return into;
}

async function whoAmI(kc: KubeConfig): Promise<string | undefined> {
  const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
  return review.status?.userInfo?.username;
}

describe('PooledKubeConfig', () => {
  it('sends a burst and a sequence of requests over a few connections, where client-node opens one each', async () => {
    const count = async (kc: KubeConfig) => {
      const before = proxy.accepted;
      const core = kc.makeApiClient(CoreV1Api);
      await Promise.all(Array.from({ length: 50 }, () => core.readNamespace({ name: 'default' })));
      for (let i = 0; i < 50; i++) await core.readNamespace({ name: 'default' });
      return proxy.accepted - before;
    };
    const pooled = via(cluster.kubeConfig(), new PooledKubeConfig());
    // The control: client-node 2's own KubeConfig, a new connection (and TLS handshake) per request.
    expect(await count(via(cluster.kubeConfig(), new KubeConfig()))).toBe(100);
    expect(await count(pooled)).toBeLessThanOrEqual(4);
    await (pooled as PooledKubeConfig).close();
  });

  it('a rotated client certificate is used from the next request on, not the pooled connection', async () => {
    const kc = via(cluster.userKubeConfig('alice'), new PooledKubeConfig()) as PooledKubeConfig;
    expect(await whoAmI(kc)).toBe('alice');
    const bob = cluster.userKubeConfig('bob').users[0]!;
    Object.assign(kc.users[0]!, { certData: bob.certData, keyData: bob.keyData });
    expect(await whoAmI(kc)).toBe('bob');
    await kc.close();
  });
});
