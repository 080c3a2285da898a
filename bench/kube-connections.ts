// Requests to a real kube-apiserver through @kubernetes/client-node, counting the TCP (and so
// TLS) connections they open: the library's own KubeConfig (a new undici Agent per request),
// and PooledKubeConfig (src/kube/config.ts) over HTTP/2 and over HTTP/1.1 keep-alive. Each goes
// through a counting TCP proxy. Run: npx tsx bench/kube-connections.ts [sequential=200] [burst=200]
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { PooledKubeConfig } from '../src/kube/config.js';
import { startCluster } from '../test/testenv/kube.js';
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
    const proxy = await countingProxy(Number(new URL(cluster.server).port));
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

/** A TCP pass-through to 127.0.0.1:target that counts the connections it accepted. */
async function countingProxy(target: number) {
  const sockets = new Set<Socket>();
  const stats = { port: 0, accepted: 0, close: async () => {} };
  const server = createServer((client) => {
    stats.accepted++;
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => (client.destroy(), upstream.destroy()));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stats.port = (server.address() as AddressInfo).port;
  stats.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  return stats;
}
