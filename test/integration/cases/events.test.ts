import { ApiException, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaseEvents, eventRetryable } from '../../../src/cases/events.js';
import { pino } from 'pino';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { CuttableProxy, throughProxy } from '../../testenv/proxy.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';

/**
 * An Event goes with a status that is already written, so it is said once: a pass that saw the
 * condition already set sends none. A lost Event is lost for good (issue 10: a PodReplaced Event
 * went missing under load), so a transient failure is retried. Here the operator's
 * ServiceAccount reaches the real API server through a proxy the test cuts.
 */
describe('case Events survive a transient API failure', () => {
  let cluster: Cluster;
  let admin: CoreV1Api;
  let proxy: CuttableProxy;
  let events: CaseEvents;
  const logged: { level: number; msg: string; attempts?: number; attempt?: number; case?: string }[] = [];

  const reasons = async (caseName: string) =>
    (
      await admin.listNamespacedEvent({
        namespace: 'default',
        fieldSelector: `involvedObject.name=${caseName}`,
      })
    ).items.map((e) => e.reason);

  beforeAll(async () => {
    cluster = await startCluster();
    admin = cluster.kubeConfig().makeApiClient(CoreV1Api);
    proxy = await CuttableProxy.start(Number(new URL(cluster.server).port));
    const kc = throughProxy(await operatorKubeConfig(cluster), proxy);
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    events = new CaseEvents(kc.makeApiClient(CoreV1Api), logger, [150, 150, 150, 150, 150, 150]);
  });
  afterAll(async () => {
    await proxy?.close();
    await cluster?.stop();
  });

  it('an Event sent while the API server is unreachable arrives once it is back, exactly once', async () => {
    proxy.cut();
    const sent = events.emit(
      { name: 'ev-cut' },
      'Warning',
      'PodReplaced',
      'pod shop/web-0 is now another UID',
    );
    await waitFor(
      'two refused attempts',
      async () => proxy.refused,
      (n) => n >= 2,
    );
    proxy.restore();
    await sent;
    expect(await reasons('ev-cut')).toEqual(['PodReplaced']);
    // Retries are not warnings: only debug lines until it went through.
    const mine = logged.filter((l) => l.case === 'ev-cut');
    expect(mine.length).toBeGreaterThanOrEqual(2);
    expect(mine.every((l) => l.level === 20 && l.msg === 'Event not recorded yet; retrying')).toBe(true);
  });

  it('an API server that stays away: given up after the last retry, never thrown', async () => {
    proxy.cut();
    await expect(
      events.emit({ name: 'ev-gone' }, 'Normal', 'Contained', 'contained'),
    ).resolves.toBeUndefined();
    // The first attempt and one per retry delay, then one warning.
    const mine = logged.filter((l) => l.case === 'ev-gone');
    expect(mine.map((l) => l.level)).toEqual([20, 20, 20, 20, 20, 20, 40]);
    expect(mine.at(-1)).toMatchObject({ msg: 'could not record Event', attempts: 7 });
    proxy.restore();
    expect(await reasons('ev-gone')).toEqual([]);
  });
});

describe('eventRetryable', () => {
  it.each<[string, unknown, boolean]>([
    ['no answer (connection reset, body cut short)', new Error('Premature close'), true],
    ['429 too many requests', new ApiException(429, 'slow down', {}, {}), true],
    ['500 internal error', new ApiException(500, 'etcd', {}, {}), true],
    ['503 unavailable', new ApiException(503, 'unavailable', {}, {}), true],
    ['403 forbidden: the same answer next time', new ApiException(403, 'forbidden', {}, {}), false],
    ['422 invalid: the same answer next time', new ApiException(422, 'invalid', {}, {}), false],
  ])('%s', (_name, err, retry) => {
    expect(eventRetryable(err)).toBe(retry);
  });
});
