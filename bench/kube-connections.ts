// Requests to a real kube-apiserver through @kubernetes/client-node, counting the TCP (and so
// TLS) connections they open: the library's own KubeConfig (a new undici Agent per request),
// and PooledKubeConfig (src/kube/config.ts) over HTTP/2 and over HTTP/1.1 keep-alive. Each goes
// through a TCP proxy that counts the connections. Run: npx tsx bench/kube-connections.ts [sequential=200] [burst=200]
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../src/kube/config.js';
import { startCluster } from '../test/testenv/kube.js';
import { CuttableProxy } from '../test/testenv/proxy.js';
import { summary } from './stats.js';

const sequential = Number(process.argv[2] ?? 200);
const burst = Number(process.argv[3] ?? 200);

const cluster = await startCluster();
try {
  const admin = cluster.kubeConfig();
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'bench' } } });
  const variants: Array<[string, () => KubeConfig]> = [
    ['client-node KubeConfig', () => new KubeConfig()],
    ['PooledKubeConfig, HTTP/2', () => new PooledKubeConfig()],
    ['PooledKubeConfig, HTTP/1.1', () => new PooledKubeConfig({ http2: false })],
  ];
  for (const [name, make] of variants) {
    const proxy = await CuttableProxy.start(Number(new URL(cluster.server).port));
    const kc = make();
    kc.loadFromOptions({
      clusters: admin.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
      users: admin.users,
      contexts: admin.contexts,
      currentContext: admin.currentContext,
    });
    const core = kc.makeApiClient(CoreV1Api);
    const get = async () => {
      const t = performance.now();
      await core.readNamespace({ name: 'bench' });
      return performance.now() - t;
    };
    await get(); // warm up: modules, first handshake
    const one: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < sequential; i++) one.push(await get());
    const seqMs = performance.now() - t0;
    const t1 = performance.now();
    const many = await Promise.all(Array.from({ length: burst }, get));
    const burstMs = performance.now() - t1;
    console.log(
      `${name}: ${proxy.accepted} connections for ${1 + sequential + burst} requests; ` +
        `${sequential} one at a time ${((sequential / seqMs) * 1000).toFixed(0)}/s, ` +
        `${burst} at once in ${burstMs.toFixed(0)} ms`,
    );
    console.log(summary(`  one at a time`, one));
    console.log(summary(`  ${burst} at once`, many));
    if (kc instanceof PooledKubeConfig) await kc.close();
    await proxy.close();
  }
} finally {
  await cluster.stop();
}
