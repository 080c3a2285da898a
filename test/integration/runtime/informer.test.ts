import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { Informer, apiListWatch, type WatchEvent } from '../../../src/runtime/informer.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { CuttableProxy } from '../../testenv/proxy.js';
import { recordEvents, serverPort, viaPort } from './helpers.js';

const ns = 'runtime-informer';
const path = `/api/v1/namespaces/${ns}/configmaps`;
let cluster: Cluster;
let kc: KubeConfig;
let core: CoreV1Api;
const informers: Informer[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  kc = cluster.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterEach(async () => {
  await Promise.all(informers.splice(0).map((i) => i.stop()));
});

afterAll(async () => {
  await cluster?.stop();
});

function informerFor(config: KubeConfig, labelSelector?: string, fieldSelector?: string): Informer {
  const informer = new Informer(apiListWatch(config, path, { labelSelector, fieldSelector, pageSize: 2 }), {
    logger: silentLogger,
    backoff: { baseMs: 50, maxMs: 500 },
  });
  informers.push(informer);
  return informer;
}

const cm = (
  name: string,
  data: Record<string, string>,
  labels: Record<string, string> = { suite: 'informer' },
) => ({
  metadata: { name, namespace: ns, labels },
  data,
});

async function write(name: string, data: Record<string, string>): Promise<V1ConfigMap> {
  return core.replaceNamespacedConfigMap({ name, namespace: ns, body: cm(name, data) });
}

describe('Informer against a real API server', () => {
  it('lists (in pages), then sees create, update and delete; honours label and field selectors', async () => {
    for (const n of ['pre-1', 'pre-2', 'pre-3']) {
      await core.createNamespacedConfigMap({ namespace: ns, body: cm(n, { v: '1' }) });
    }
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('other', { v: '1' }, { suite: 'x' }) });
    const informer = informerFor(kc, 'suite=informer');
    const events = recordEvents(informer);
    informer.start();
    await informer.waitForSync();
    expect(events.sort()).toEqual(['add pre-1 v=1', 'add pre-2 v=1', 'add pre-3 v=1']);
    expect(informer.get(`${ns}/pre-1`)?.metadata?.namespace).toBe(ns);
    events.length = 0;
    const byName = informerFor(kc, undefined, 'metadata.name=pre-2');
    byName.start();
    await byName.waitForSync();
    expect(byName.list().map((o) => o.metadata?.name)).toEqual(['pre-2']);

    await core.createNamespacedConfigMap({ namespace: ns, body: cm('live', { v: '1' }) });
    await write('live', { v: '2' });
    await core.deleteNamespacedConfigMap({ name: 'live', namespace: ns });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('ignored', {}, { suite: 'x' }) });
    await vi.waitFor(() => expect(events).toEqual(['add live v=1', 'update live v=2', 'delete live']));
    expect(informer.get(`${ns}/live`)).toBeUndefined();
    expect(informer.get(`${ns}/ignored`)).toBeUndefined();
    // Every object is plain JSON as the server sent it (no Date objects from a typed client).
    expect(typeof informer.get(`${ns}/pre-1`)?.metadata?.creationTimestamp).toBe('string');

    for (const n of ['pre-1', 'pre-2', 'pre-3', 'other', 'ignored']) {
      await core.deleteNamespacedConfigMap({ name: n, namespace: ns });
    }
  });

  it('the server answers a watch from a resourceVersion it no longer has with 410 Gone', async () => {
    // A restarted API server's watch cache starts at the current revision: older ones are gone.
    const { resourceVersion } = await apiListWatch(kc, path).list();
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('bump', {}) });
    await cluster.stopApiServer();
    await cluster.startApiServer();
    await core.deleteNamespacedConfigMap({ name: 'bump', namespace: ns });

    const events: WatchEvent[] = [];
    let ended = false;
    const stop = await apiListWatch(kc, path).watch(
      resourceVersion,
      (e) => events.push(e),
      () => (ended = true),
    );
    await vi.waitFor(() => expect(events.length > 0 || ended).toBe(true));
    stop();
    expect(events[0]).toMatchObject({ type: 'ERROR', object: { code: 410 } });
  });

  it('catches up on everything it missed while its connection was cut', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('keep', { v: '1' }) });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('change', { v: '1' }) });
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('remove', { v: '1' }) });
    const proxy = await CuttableProxy.start(serverPort(kc));
    try {
      const informer = informerFor(viaPort(kc, proxy.port));
      const events = recordEvents(informer);
      informer.start();
      await informer.waitForSync();
      events.length = 0;

      proxy.cut();
      await write('change', { v: '2' });
      await core.deleteNamespacedConfigMap({ name: 'remove', namespace: ns });
      await core.createNamespacedConfigMap({ namespace: ns, body: cm('new', { v: '1' }) });
      // It has tried to reconnect, and been refused, more than once before the line comes back.
      await vi.waitFor(() => expect(proxy.refused).toBeGreaterThanOrEqual(2), {
        timeout: 10_000,
      });
      proxy.restore();

      await vi.waitFor(
        () => expect(events.sort()).toEqual(['add new v=1', 'delete remove', 'update change v=2']),
        {
          timeout: 10_000,
        },
      );
      expect(
        informer
          .list()
          .map((o) => o.metadata?.name)
          .sort(),
      ).toEqual(['change', 'keep', 'new']);
    } finally {
      await proxy.close();
    }
    for (const n of ['keep', 'change', 'new'])
      await core.deleteNamespacedConfigMap({ name: n, namespace: ns });
  });

  it('relists and carries on after the API server restarts', async () => {
    const informer = informerFor(kc);
    const events = recordEvents(informer);
    informer.start();
    await informer.waitForSync();
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('before', { v: '1' }) });
    await vi.waitFor(() => expect(events).toEqual(['add before v=1']));
    const rvBefore = informer.lastSyncResourceVersion();

    await cluster.stopApiServer();
    await cluster.startApiServer();

    await core.createNamespacedConfigMap({ namespace: ns, body: cm('after', { v: '1' }) });
    await write('before', { v: '2' });
    await vi.waitFor(() => expect(events).toEqual(['add before v=1', 'add after v=1', 'update before v=2']), {
      timeout: 30_000,
    });
    expect(Number(informer.lastSyncResourceVersion())).toBeGreaterThan(Number(rvBefore));
    for (const n of ['before', 'after']) await core.deleteNamespacedConfigMap({ name: n, namespace: ns });
  });
});
