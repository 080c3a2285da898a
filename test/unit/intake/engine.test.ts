import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRegistry } from '../../../src/observability/metrics.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import { ALERTS_KEPT } from '../../../src/api/forensiccase.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import { IntakeEngine } from '../../../src/intake/engine.js';
import { QueueFullError } from '../../../src/intake/errors.js';
import { parseFalcoBody, toAlert, type Alert } from '../../../src/intake/falco.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import { aimAtPod } from './audit-fixtures.js';
import { MemoryCaseApi } from './memory-api.js';

const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'falco');

let seq = 0;
const alert = (pod: string, rule = 'Terminal shell in container', over: Partial<Alert> = {}): Alert => {
  seq++;
  const s = String(seq % 1_000_000_000).padStart(9, '0');
  return {
    rule,
    priority: 'Critical',
    time: `2024-01-01T00:00:00.${s}Z`,
    timeNs: 1704067200000000000n + BigInt(seq % 1_000_000_000),
    source: 'syscall',
    tags: [],
    fields: {},
    target: { namespace: 'shop', pod },
    hostname: `node-${pod}`,
    uuid: `u-${seq}`,
    ...over,
  };
};

function setup(opts: { queue?: object; limits?: object; policy?: object } = {}) {
  const api = new MemoryCaseApi();
  const registry = createRegistry();
  const engine = new IntakeEngine({
    api,
    logger: silentLogger,
    metrics: createIntakeMetrics(registry),
    queue: opts.queue,
    limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100, ...opts.limits },
    backoff: { baseMs: 0, maxMs: 0 },
  });
  engine.setPolicies([
    {
      name: 'shells',
      spec: ResponsePolicySpec.parse({
        limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100 },
        ...opts.policy,
      }),
    },
  ]);
  engine.setClusterNodes(1000);
  const metric = async (name: string) =>
    (await registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));
  return { api, engine, metric };
}

describe('IntakeEngine dedup and coalescing', () => {
  it('opens one case per pod and folds a flood into one create and one patch', async () => {
    const { api, engine, metric } = setup();
    const first = engine.accept(alert('web-1'));
    expect(first).toMatchObject({
      outcome: 'opened',
      case: caseNameFor({ namespace: 'shop', pod: 'web-1' }),
    });
    for (let i = 0; i < 9_999; i++)
      expect(
        engine.accept(alert('web-1', i % 3 ? 'Terminal shell in container' : `rule-${i % 7}`)).outcome,
      ).toBe('attached');
    expect(engine.queueDepth).toBe(10_000);
    await engine.flush();
    expect(api.calls).toEqual({ create: 1, get: 0, patch: 1 });
    expect(engine.queueDepth).toBe(0);
    const c = [...api.cases.values()][0]!;
    const alerts = c.status!.alerts!;
    expect(alerts.count).toBe(10_000);
    expect(alerts.recent.length).toBeLessThanOrEqual(ALERTS_KEPT);
    expect(new Set(alerts.rules)).toEqual(
      new Set(['Terminal shell in container', ...Array.from({ length: 7 }, (_, i) => `rule-${i}`)]),
    );
    expect(alerts.firstSeen! < alerts.lastSeen!).toBe(true);
    expect(alerts.count).toBe(alerts.recent.length + alerts.dropped);
    expect(await metric('amber_alerts_deduplicated_total')).toEqual(['amber_alerts_deduplicated_total 9999']);
  });

  it('lists a repeated rule once per dedup window but counts every repeat', async () => {
    const { api, engine } = setup({ policy: { dedupWindowSeconds: 60 } });
    for (let i = 0; i < 5; i++) engine.accept(alert('web-2'), 1_000 + i);
    engine.accept(alert('web-2'), 61_001);
    await engine.flush();
    const alerts = [...api.cases.values()][0]!.status!.alerts!;
    expect(alerts.count).toBe(6);
    expect(alerts.recent).toHaveLength(2);
    expect(alerts.dropped).toBe(4);
  });

  it('adds later alerts to what the case says, and retries a conflicting write', async () => {
    const { api, engine } = setup();
    engine.accept(alert('web-3'));
    await engine.flush();
    const name = [...api.cases.keys()][0]!;
    api.touch(name, { phase: 'Contained' }); // the reconciler wrote meanwhile
    for (let i = 0; i < 3; i++) engine.accept(alert('web-3'));
    await engine.flush();
    const c = api.cases.get(name)!;
    expect(c.status).toMatchObject({ phase: 'Contained', alerts: { count: 4 } });
    expect(api.calls.get).toBe(1); // one re-read after the 409
  });

  it('attaches to an open case found through AlreadyExists, and opens the next one when it was released', async () => {
    const { api, engine } = setup();
    const target = { namespace: 'shop', pod: 'web-4' };
    // A case that exists on the server but not yet in the engine's view (a restart).
    api.cases.set(caseNameFor(target), {
      metadata: { name: caseNameFor(target), resourceVersion: '1' },
      spec: { target, release: true },
    });
    engine.accept(alert('web-4'));
    await engine.flush(); // 409, read: released, move to -2
    await engine.flush();
    expect(api.cases.get(caseNameFor(target, 2))?.status?.alerts?.count).toBe(1);
    expect(engine.accept(alert('web-4'))).toMatchObject({
      outcome: 'attached',
      case: caseNameFor(target, 2),
    });

    const other = { namespace: 'shop', pod: 'web-5' };
    api.cases.set(caseNameFor(other), {
      metadata: { name: caseNameFor(other), resourceVersion: '1' },
      spec: { target: other },
    });
    engine.accept(alert('web-5'));
    await engine.flush();
    expect(api.cases.size).toBe(3);
    expect(api.cases.get(caseNameFor(other))?.status?.alerts?.count).toBe(1);
  });
});

describe('IntakeEngine while the API server is away', () => {
  it('keeps accepted alerts, writes them in order when it is back, and refuses past the queue limit', async () => {
    const { api, engine, metric } = setup({ queue: { maxQueuedAlerts: 50, maxPendingCases: 3 } });
    api.down = true;
    for (let i = 0; i < 20; i++) engine.accept(alert('a'));
    for (let i = 0; i < 20; i++) engine.accept(alert('b'));
    await engine.flush();
    expect(engine.queueDepth).toBe(40);
    engine.accept(alert('c'));
    expect(() => engine.accept(alert('d'))).toThrow(QueueFullError); // a fourth pending case
    for (let i = 0; i < 9; i++) engine.accept(alert('a'));
    expect(() => engine.accept(alert('a'))).toThrow(/50 alerts are waiting/);
    expect(engine.queueDepth).toBe(50);
    expect(await metric('amber_intake_queue_depth')).toEqual(['amber_intake_queue_depth 50']);

    api.down = false;
    await engine.flush();
    expect(engine.queueDepth).toBe(0);
    expect([...api.cases.values()].map((c) => [c.spec?.target?.pod, c.status?.alerts?.count])).toEqual([
      ['a', 29],
      ['b', 20],
      ['c', 1],
    ]);
  });
});

describe('IntakeEngine decisions', () => {
  it('records dry runs and unmatched or targetless alerts without writing', async () => {
    const { api, engine, metric } = setup({ policy: { dryRun: true } });
    expect(engine.accept(alert('x'))).toMatchObject({ outcome: 'dry-run', policy: 'shells' });
    expect(engine.accept(alert('x', 'r', { target: undefined, noTargetReason: 'none' }))).toMatchObject({
      outcome: 'not-acted',
      reason: 'no-target',
    });
    engine.setPolicies([]);
    expect(engine.accept(alert('x'))).toMatchObject({ outcome: 'not-acted', reason: 'unmatched' });
    await engine.flush();
    expect(api.cases.size).toBe(0);
    expect(api.events).toHaveLength(1);
    expect(await metric('amber_alerts_not_acted_total')).toEqual([
      'amber_alerts_not_acted_total{reason="dry-run"} 1',
      'amber_alerts_not_acted_total{reason="no-target"} 1',
      'amber_alerts_not_acted_total{reason="unmatched"} 1',
    ]);
  });

  it('acts on the target of an audited request only when it succeeded and a policy opts in', async () => {
    // Real Falco events (test/fixtures/falco), aimed at the pod shop/web-0.
    const read = (f: string) => toAlert(parseFalcoBody(aimAtPod(readFileSync(join(fixtures, f)))));
    const denied = read('k8saudit-disallowed-user-denied.json');
    const allowed = read('k8saudit-disallowed-user.json');

    const { api, engine, metric } = setup();
    expect(engine.accept(denied)).toMatchObject({
      outcome: 'not-acted',
      reason: 'audit-request-not-succeeded',
      message: expect.stringMatching(/403/),
    });
    expect(engine.accept(allowed)).toMatchObject({
      outcome: 'not-acted',
      reason: 'audit-target-not-opted-in',
    });
    await engine.flush();
    expect(api.cases.size).toBe(0);

    engine.setPolicies([
      { name: 'audits', spec: ResponsePolicySpec.parse({ match: { auditTargets: true } }) },
    ]);
    expect(engine.accept(denied)).toMatchObject({
      outcome: 'not-acted',
      reason: 'audit-request-not-succeeded',
    });
    const opened = engine.accept(allowed);
    expect(opened).toMatchObject({ outcome: 'opened', policy: 'audits' });
    // Once a case is open, a refused request naming the pod is still not recorded on it.
    expect(engine.accept(denied)).toMatchObject({
      outcome: 'not-acted',
      reason: 'audit-request-not-succeeded',
    });
    await engine.flush();
    expect([...api.cases.values()].map((c) => c.spec?.target)).toMatchObject([
      { namespace: 'shop', pod: 'web-0' },
    ]);
    expect([...api.cases.values()][0]!.status?.alerts?.count).toBe(1);
    expect(await metric('amber_alerts_not_acted_total')).toEqual([
      'amber_alerts_not_acted_total{reason="audit-request-not-succeeded"} 3',
      'amber_alerts_not_acted_total{reason="audit-target-not-opted-in"} 1',
    ]);
  });

  it("protects Falco's and Falcosidekick's namespaces by default", () => {
    const api = new MemoryCaseApi();
    const engine = new IntakeEngine({
      api,
      logger: silentLogger,
      metrics: createIntakeMetrics(createRegistry()),
    });
    engine.setPolicies([{ name: 'all', spec: ResponsePolicySpec.parse({ match: { auditTargets: true } }) }]);
    for (const namespace of ['falco', 'falcosidekick', 'kube-system'])
      expect(
        engine.accept(alert('x', undefined, { target: { namespace, pod: 'falco-abcde' } })),
      ).toMatchObject({
        outcome: 'not-acted',
        reason: 'protected-namespace',
      });
    expect(engine.accept(alert('x', undefined, { target: { namespace: 'shop', pod: 'x' } })).outcome).toBe(
      'opened',
    );
  });

  it('never acts in a protected namespace unless a policy names it', () => {
    const { engine } = setup({ limits: { protectedNamespaces: ['kube-system'] } });
    const a = alert('coredns', undefined, { target: { namespace: 'kube-system', pod: 'coredns' } });
    expect(engine.accept(a)).toMatchObject({ outcome: 'not-acted', reason: 'protected-namespace' });
  });

  it('holds the open-case limits and leaves the node limit to the case reconciler', async () => {
    const { api, engine } = setup({ limits: { maxOpenCases: 3, maxCordonedNodes: 1 } });
    expect(engine.accept(alert('p1'))).toMatchObject({ outcome: 'opened' });
    // Past the node limit by the alerts' hostnames: the intake no longer counts those (ADR 0010).
    expect(engine.accept(alert('p2'))).toEqual({
      outcome: 'opened',
      case: expect.any(String),
      policy: 'shells',
    });
    expect(engine.accept(alert('p3')).outcome).toBe('opened');
    expect(engine.accept(alert('p4'))).toMatchObject({ outcome: 'not-acted', reason: 'max-open-cases' });
    expect(engine.accept(alert('p1')).outcome).toBe('attached'); // still recorded on its case
    await engine.flush();
    const byPod = new Map([...api.cases.values()].map((c) => [c.spec?.target?.pod, c]));
    expect(byPod.size).toBe(3);
    for (const pod of ['p1', 'p2', 'p3'])
      expect(byPod.get(pod)?.spec?.containment).toMatchObject({ cordonNode: true, taintNode: true });
    expect(api.events.map((e) => (e as { reason: string }).reason)).toEqual(['LimitReached']);
  });
});

describe('caseNameFor', () => {
  it.each([
    ['shop', 'web-0'],
    ['ecommerce-production', 'payment-gateway-worker-7d9f8b6c5d-x2x4z'],
    ['n'.repeat(63), 'p'.repeat(253)],
    ['a', 'b.c-d-----'.repeat(20)],
  ])('%s/%s: a valid label value (at most 63 characters, alphanumeric at both ends)', (namespace, pod) => {
    for (const seq of [1, 2, 99]) {
      const name = caseNameFor({ namespace, pod }, seq);
      expect(name.length).toBeLessThanOrEqual(63);
      expect(name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    }
  });

  it('keeps two long pods that share their first 54 characters apart', () => {
    const a = caseNameFor({ namespace: 'shop', pod: `${'x'.repeat(60)}-a` });
    const b = caseNameFor({ namespace: 'shop', pod: `${'x'.repeat(60)}-b` });
    expect(a).not.toBe(b);
  });
});
