import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import {
  CASE_LABEL,
  NETWORK_QUARANTINE_LABEL,
  QUARANTINE_LABEL,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { IntakeEngine, type Journal, type LoggedAlert } from '../../../src/intake/engine.js';
import type { Alert } from '../../../src/intake/falco.js';
import { EarlyIsolator, isolateEarly, type PodIsolationApi } from '../../../src/intake/isolate.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import type { WalToken } from '../../../src/intake/wal.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { ApiException } from '@kubernetes/client-node';
import { MemoryCaseApi } from './memory-api.js';

const pod = (labels: Record<string, string> = { app: 'web' }, over: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { name: 'web-0', namespace: 'shop', uid: 'u1', resourceVersion: '42', labels },
  spec: { containers: [], ...over },
});

describe('isolateEarly: what the intake writes on the pod the API server has', () => {
  it.each([
    ['no such pod', undefined, { action: 'skip', reason: 'pod-not-found' }],
    [
      'a hostNetwork pod: no policy applies, the reconciler says so',
      pod({}, { hostNetwork: true }),
      {
        action: 'skip',
        reason: 'host-network',
      },
    ],
    [
      'a pod another case’s label names (maybe the attacker’s own label): the reconciler checks that case’s pin',
      pod({ [CASE_LABEL]: 'other' }),
      { action: 'skip', reason: 'labelled-for-another-case' },
    ],
    [
      'a network label naming another case',
      pod({ [NETWORK_QUARANTINE_LABEL]: 'other' }),
      { action: 'skip', reason: 'labelled-for-another-case' },
    ],
    [
      'already labelled for this case: nothing to write',
      pod({ [CASE_LABEL]: 'c1', [QUARANTINE_LABEL]: 'true', [NETWORK_QUARANTINE_LABEL]: 'c1' }),
      { action: 'skip', reason: 'already-labelled' },
    ],
    [
      'an unlabelled pod: one patch, guarded by the UID and resourceVersion it was read with',
      pod(),
      {
        action: 'label',
        patch: {
          metadata: {
            uid: 'u1',
            resourceVersion: '42',
            labels: { [CASE_LABEL]: 'c1', [QUARANTINE_LABEL]: 'true', [NETWORK_QUARANTINE_LABEL]: 'c1' },
          },
        },
      },
    ],
    [
      'labelled for this case but without the network label: labelled fully',
      pod({ [CASE_LABEL]: 'c1' }),
      { action: 'label' },
    ],
  ] as const)('%s', (_name, p, want) => {
    expect(isolateEarly(p as V1Pod | undefined, 'c1')).toMatchObject(want);
  });

  it('never removes or changes a label other than its own (no detach: that is the reconciler’s)', () => {
    const d = isolateEarly(pod({ app: 'web', tier: 'front' }), 'c1');
    expect(
      d.action === 'label' && Object.keys((d.patch as { metadata: { labels: object } }).metadata.labels),
    ).toEqual([CASE_LABEL, QUARANTINE_LABEL, NETWORK_QUARANTINE_LABEL]);
  });
});

/** Records the calls; every pod is `web-*` in `shop`. */
class RecordingPodApi implements PodIsolationApi {
  calls: string[] = [];
  policyExists = false;
  async readPod(namespace: string, name: string) {
    this.calls.push(`get ${namespace}/${name}`);
    return { ...pod(), metadata: { ...pod().metadata, name, namespace } };
  }
  async patchPod(namespace: string, name: string) {
    this.calls.push(`patch ${namespace}/${name}`);
  }
  async createNetworkPolicy(namespace: string, body: { metadata?: { name?: string } }) {
    this.calls.push(`create ${namespace}/${body.metadata?.name}`);
    if (this.policyExists) throw new ApiException(409, 'AlreadyExists', {}, {});
    this.policyExists = true;
  }
}

describe('EarlyIsolator', () => {
  it('creates the standing policy once per namespace, then one label write per pod', async () => {
    const api = new RecordingPodApi();
    const isolator = new EarlyIsolator(api, silentLogger);
    const outcomes = await Promise.all(
      ['web-1', 'web-2', 'web-3'].map((p) => isolator.isolate(`c-${p}`, { namespace: 'shop', pod: p })),
    );
    expect(outcomes).toEqual(['label', 'label', 'label']);
    expect(api.calls.filter((c) => c.startsWith('create'))).toEqual([`create shop/${STANDING_POLICY_NAME}`]);
    expect(api.calls.filter((c) => c.startsWith('patch'))).toEqual([
      'patch shop/web-1',
      'patch shop/web-2',
      'patch shop/web-3',
    ]);
  });

  it('a policy already there (409) counts as created; a failure is retried on the next pod', async () => {
    const api = new RecordingPodApi();
    api.policyExists = true;
    const isolator = new EarlyIsolator(api, silentLogger);
    expect(await isolator.isolate('c1', { namespace: 'shop', pod: 'web-1' })).toBe('label');
    const failing = new RecordingPodApi();
    failing.createNetworkPolicy = async () => {
      failing.calls.push('create failed');
      throw new ApiException(503, 'unavailable', {}, {});
    };
    const flaky = new EarlyIsolator(failing, silentLogger);
    expect(await flaky.isolate('c1', { namespace: 'shop', pod: 'web-1' })).toBe('failed');
    expect(await flaky.isolate('c2', { namespace: 'shop', pod: 'web-2' })).toBe('failed');
    expect(failing.calls.filter((c) => c === 'create failed')).toHaveLength(2);
    // No label without the policy it relies on.
    expect(failing.calls.some((c) => c.startsWith('patch'))).toBe(false);
  });
});

describe('the engine isolates early only once the opening alert is durable', () => {
  function setup(
    policy: object = {},
    safety = { operatorNamespace: 'amber', allowKubeSystem: false, protectedNamespaces: ['vault'] },
  ) {
    const isolated: string[] = [];
    /** Each isolation stays pending until the test settles it. */
    const pendingIsolations: (() => void)[] = [];
    const api = new MemoryCaseApi();
    const syncs: { resolve: () => void; reject: (e: Error) => void }[] = [];
    let seq = 0;
    const journal: Journal = {
      append(_record: LoggedAlert) {
        let resolve!: () => void;
        let reject!: (e: Error) => void;
        const durable = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
        syncs.push({ resolve, reject });
        return { token: { log: 'run', seq: ++seq } as WalToken, durable };
      },
      done() {},
    };
    const engine = new IntakeEngine({
      api,
      journal,
      logger: silentLogger,
      metrics: createIntakeMetrics(createRegistry()),
      limits: { maxOpenCases: 100, protectedNamespaces: [] },
      earlyIsolation: {
        safety,
        isolator: {
          isolate: (c, t) => {
            isolated.push(`${c} ${t.namespace}/${t.pod}`);
            return new Promise<void>((resolve) => pendingIsolations.push(resolve));
          },
        },
      },
    });
    engine.setPolicies([
      {
        name: 'p',
        spec: ResponsePolicySpec.parse({
          match: { namespaces: ['*', 'vault', 'amber', 'kube-system'] },
          limits: { maxOpenCases: 100 },
          ...policy,
        }),
      },
    ]);
    engine.setClusterNodes(10);
    return { engine, isolated, syncs, api, pendingIsolations };
  }
  const alert = (namespace: string, pod: string): Alert => ({
    rule: 'Terminal shell in container',
    priority: 'Critical',
    time: '2024-01-01T00:00:00.000000001Z',
    timeNs: 1704067200000000001n,
    source: 'syscall',
    tags: [],
    fields: {},
    target: { namespace, pod },
  });
  const settle = () => new Promise((r) => setImmediate(r));

  it('not before the fsync, and never when the fsync failed', async () => {
    const { engine, isolated, syncs } = setup();
    const opened = engine.accept(alert('shop', 'web-1'));
    expect(opened.outcome).toBe('opened');
    await settle();
    expect(isolated).toEqual([]);
    syncs[0]!.resolve();
    await settle();
    expect(isolated).toHaveLength(1);
    expect(isolated[0]).toMatch(/ shop\/web-1$/);

    engine.accept(alert('shop', 'web-2'));
    syncs[1]!.reject(new Error('EIO'));
    await settle();
    expect(isolated).toHaveLength(1);
  });

  it('the case is written once the isolation settled, so the two do not compete in a storm', async () => {
    const { engine, syncs, api, pendingIsolations } = setup();
    engine.accept(alert('shop', 'web-1'));
    syncs[0]!.resolve();
    await settle();
    expect(pendingIsolations).toHaveLength(1);
    await engine.flush();
    expect(api.calls.create).toBe(0);
    pendingIsolations[0]!();
    await settle();
    await engine.flush();
    expect(api.calls.create).toBe(1);
  });

  it('a failed fsync writes the case as before (nothing isolated), and stop() never waits on an isolation', async () => {
    const failed = setup();
    failed.engine.accept(alert('shop', 'web-1'));
    failed.syncs[0]!.reject(new Error('EIO'));
    await settle();
    await failed.engine.flush();
    expect(failed.isolated).toEqual([]);
    expect(failed.api.calls.create).toBe(1);

    const stopping = setup();
    stopping.engine.accept(alert('shop', 'web-2'));
    stopping.syncs[0]!.resolve();
    await settle();
    await stopping.engine.stop(1_000);
    expect(stopping.api.calls.create).toBe(1);
  });

  it('only for an opening alert: one attached to an open case changes nothing', async () => {
    const { engine, isolated, syncs } = setup();
    engine.accept(alert('shop', 'web-1'));
    expect(engine.accept(alert('shop', 'web-1')).outcome).toBe('attached');
    syncs.forEach((s) => s.resolve());
    await settle();
    expect(isolated).toHaveLength(1);
  });

  it('never for a case the reconciler would refuse (protected namespaces), nor without isolateNetwork', async () => {
    const { engine, isolated, syncs } = setup();
    // The policy names them exactly, so the intake opens the cases; the reconciler refuses them.
    for (const ns of ['amber', 'kube-system', 'vault'])
      expect(engine.accept(alert(ns, 'x')).outcome).toBe('opened');
    syncs.forEach((s) => s.resolve());
    await settle();
    expect(isolated).toEqual([]);

    const off = setup({ containment: { isolateNetwork: false } });
    expect(off.engine.accept(alert('shop', 'web-1')).outcome).toBe('opened');
    off.syncs.forEach((s) => s.resolve());
    await settle();
    expect(off.isolated).toEqual([]);
  });

  it('never in dry run', async () => {
    const { engine, isolated, syncs } = setup({ dryRun: true });
    expect(engine.accept(alert('shop', 'web-1')).outcome).toBe('dry-run');
    syncs.forEach((s) => s.resolve());
    await settle();
    expect(isolated).toEqual([]);
  });
});
