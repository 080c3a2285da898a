import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { RealNode, nodeUnavailable } from '../../testenv/node.js';
import { NodePods } from '../../testenv/node-pods.js';
import { waitFor } from '../../testenv/wait.js';

const unavailable = nodeUnavailable();
if (unavailable) console.warn(`SKIPPED test/integration/node/kubelet.test.ts: ${unavailable}`);

describe.skipIf(unavailable)('a real node: kubelet, containerd, runc and CNI', () => {
  let cluster: Cluster;
  let node: RealNode;
  let pods: NodePods;

  beforeAll(async () => {
    const t0 = Date.now();
    cluster = await startCluster({ realNode: true });
    const clusterMs = Date.now() - t0;
    node = await RealNode.start(cluster);
    console.log(`real node cold start: control plane ${clusterMs} ms, node`, node.times);
    pods = new NodePods(cluster.kubeConfig());
    await pods.core.createNamespace({ body: { metadata: { name: 'shop' } } });
  }, 20 * 60_000); // waits while another test file holds the node
  afterAll(async () => {
    await node?.stop();
    await cluster?.stop();
  }, 120_000);

  it('runs a pod whose log is read through the API server and the kubelet', async () => {
    const started = Date.now();
    const pod = await pods.run('shop', 'hello', node.images.busybox!.ref, [
      'sh',
      '-c',
      'echo "hello from $(hostname)"; exec sleep 3600',
    ]);
    console.log(`pod Ready in ${Date.now() - started} ms at ${pod.status?.podIP}`);
    expect(pod.status?.podIP).toMatch(/^10\.244\.0\./);
    expect(pod.status?.hostIP).toBe(node.address);
    expect(pod.status?.containerStatuses?.[0]?.containerID).toMatch(/^containerd:\/\/[0-9a-f]{64}$/);
    const log = await waitFor(
      'log line',
      () => pods.logs('shop', 'hello'),
      (l) => l.includes('hello'),
    );
    expect(log).toBe('hello from hello\n');
  });

  it('serves exec through the kubelet, with the exit code', async () => {
    const ok = await pods.exec('shop', 'hello', ['sh', '-c', 'echo out; echo err >&2; cat /proc/1/cmdline']);
    expect(ok).toEqual({ code: 0, stdout: expect.stringMatching(/^out\nsleep\0?3600/), stderr: 'err\n' });
    const failed = await pods.exec('shop', 'hello', ['sh', '-c', 'exit 7']);
    expect(failed.code).toBe(7);
  });

  it("keeps the previous container's log after a restart", async () => {
    // The first run leaves a mark in an emptyDir (it outlives the container) and fails; the
    // second one sees it and stays up, so the kubelet keeps exactly one previous container.
    await pods.core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name: 'restarts' },
        spec: {
          nodeName: node.name,
          volumes: [{ name: 'data', emptyDir: {} }],
          containers: [
            {
              name: 'main',
              image: node.images.busybox!.ref,
              imagePullPolicy: 'Never',
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
              command: [
                'sh',
                '-c',
                'if [ -f /data/ran ]; then echo second; exec sleep 3600; fi; touch /data/ran; echo first; exit 3',
              ],
            },
          ],
        },
      },
    });
    const pod = await waitFor(
      'restarted and running',
      () => pods.core.readNamespacedPod({ namespace: 'shop', name: 'restarts' }),
      (p) =>
        p.status?.containerStatuses?.[0]?.restartCount === 1 &&
        !!p.status.containerStatuses[0].state?.running,
      60_000,
    );
    expect(pod.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode).toBe(3);
    expect(await pods.logs('shop', 'restarts', true)).toBe('first\n');
    expect(
      await waitFor(
        'current log',
        () => pods.logs('shop', 'restarts'),
        (l) => l !== '',
      ),
    ).toBe('second\n');
  });

  it('refuses an image that was never imported, and never pulls it', async () => {
    await pods.core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name: 'no-image' },
        spec: {
          nodeName: node.name,
          containers: [{ name: 'main', image: 'localhost/not-imported:1', imagePullPolicy: 'Never' }],
        },
      },
    });
    const pod = await waitFor(
      'ErrImageNeverPull',
      () => pods.core.readNamespacedPod({ namespace: 'shop', name: 'no-image' }),
      (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ErrImageNeverPull',
    );
    expect(pod.status?.phase).toBe('Pending');
  });

  it("refuses the kubelet's API to a client without credentials and to one without rights", async () => {
    const port = (await pods.core.readNode({ name: node.name })).status?.daemonEndpoints?.kubeletEndpoint
      ?.Port;
    const url = `https://${node.address}:${port}/pods`;
    const ca = readFileSync(cluster.pki.caCert);
    expect(await status(url, { ca })).toBe(401);
    const nobody = cluster.pki.issue('nobody', { cn: 'nobody' });
    expect(await status(url, { ca, cert: readFileSync(nobody.cert), key: readFileSync(nobody.key) })).toBe(
      403,
    );
  });
});

function status(url: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...tls, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}
