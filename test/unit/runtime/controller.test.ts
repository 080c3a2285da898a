import { ApiException, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import {
  Controller,
  ownerKeys,
  type Reconcile,
  type ReconcileContext,
} from '../../../src/runtime/controller.js';
import {
  CatastrophicError,
  ConflictError,
  TRANSIENT_ATTEMPTS_BEFORE_ERROR,
  TerminalError,
} from '../../../src/runtime/errors.js';
import { Informer, type ListWatch } from '../../../src/runtime/informer.js';

const controllers: Controller[] = [];
function make(reconcile: Reconcile, extra: Partial<ConstructorParameters<typeof Controller>[0]> = {}) {
  const registry = extra.registry ?? createRegistry();
  const c = new Controller({
    name: 'test',
    reconcile,
    logger: silentLogger,
    registry,
    queue: { baseDelayMs: 1, maxDelayMs: 10 },
    ...extra,
  });
  controllers.push(c);
  return { c, registry };
}

afterEach(async () => {
  await Promise.all(controllers.splice(0).map((c) => c.stop(1000)));
});

async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const found = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return found?.value ?? 0;
}

describe('Controller', () => {
  it('reconciles an enqueued key with a context that has a unique reconcile ID', async () => {
    const seen: ReconcileContext[] = [];
    const { c, registry } = make(async (_key, ctx) => {
      seen.push(ctx);
    });
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    c.enqueue('a');
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    expect(seen[0]!.key).toBe('a');
    expect(seen[0]!.reconcileId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[0]!.reconcileId).not.toBe(seen[1]!.reconcileId);
    await vi.waitFor(async () =>
      expect(
        await metricValue(registry, 'amber_reconcile_total', { controller: 'test', result: 'success' }),
      ).toBe(2),
    );
    const text = await registry.getSingleMetricAsString('amber_reconcile_duration_seconds');
    expect(text).toContain('amber_reconcile_duration_seconds_count{controller="test"} 2');
  });

  it('retries a failing key with backoff, then forgets its failures on success', async () => {
    let calls = 0;
    const { c, registry } = make(async () => {
      calls++;
      if (calls < 4) throw new Error('transient');
    });
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(calls).toBe(4));
    await vi.waitFor(() => expect(c.queue.numRequeues('a')).toBe(0));
    expect(await metricValue(registry, 'amber_reconcile_total', { result: 'error' })).toBe(3);
    expect(await metricValue(registry, 'amber_workqueue_retries_total', { controller: 'test' })).toBe(3);
  });

  it('logs a retried transient failure at warn with its attempt number; anything else at error', async () => {
    const lines: Array<{ level: number; msg: string; attempt?: number; key?: string }> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    let calls = 0;
    const { c } = make(
      async (key) => {
        if (key === 'rbac') throw new ApiException(403, 'Forbidden', {}, {});
        calls++;
        if (calls <= 2) throw new TypeError('fetch failed', { cause: reset() });
      },
      { logger },
    );
    c.start();
    c.enqueue('burst');
    await vi.waitFor(() => expect(calls).toBe(3));
    c.enqueue('rbac');
    await vi.waitFor(() => expect(lines.filter((l) => l.key === 'rbac')).not.toHaveLength(0));
    const failures = lines.filter((l) => l.msg === 'reconcile failed, retrying');
    expect(failures.filter((l) => l.key === 'burst').map((l) => [l.level, l.attempt])).toEqual([
      [40, 1],
      [40, 2],
    ]);
    expect(failures.find((l) => l.key === 'rbac')).toMatchObject({ level: 50, attempt: 1 });
  });

  it('a transient failure that persists becomes an error', async () => {
    const lines: Array<{ level: number; attempt?: number }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const { c } = make(
      async () => {
        throw new ApiException(503, 'Service Unavailable', {}, {});
      },
      { logger, queue: { baseDelayMs: 1, maxDelayMs: 1 } },
    );
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(lines.length).toBeGreaterThanOrEqual(TRANSIENT_ATTEMPTS_BEFORE_ERROR));
    await c.stop(1000);
    expect(lines.slice(0, TRANSIENT_ATTEMPTS_BEFORE_ERROR - 1).every((l) => l.level === 40)).toBe(true);
    expect(lines[TRANSIENT_ATTEMPTS_BEFORE_ERROR - 1]).toMatchObject({
      level: 50,
      attempt: TRANSIENT_ATTEMPTS_BEFORE_ERROR,
    });
  });

  it('requeues an API conflict quietly, counted as a conflict', async () => {
    let calls = 0;
    const { c, registry } = make(async () => {
      calls++;
      if (calls === 1) throw new ApiException(409, 'Conflict', {}, {});
      if (calls === 2) throw new ConflictError('stale');
    });
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(calls).toBe(3));
    expect(await metricValue(registry, 'amber_reconcile_total', { result: 'conflict' })).toBe(2);
  });

  it('requeues after the time reconcile asks for', async () => {
    let calls = 0;
    const { c, registry } = make(async () => {
      calls++;
      return calls === 1 ? { requeueAfterMs: 20 } : undefined;
    });
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(calls).toBe(2));
    expect(await metricValue(registry, 'amber_reconcile_total', { result: 'requeue' })).toBe(1);
    expect(await metricValue(registry, 'amber_reconcile_total', { result: 'success' })).toBe(1);
  });

  it('records a terminal error once and does not retry it', async () => {
    const recorded: string[] = [];
    let calls = 0;
    const { c, registry } = make(
      async () => {
        calls++;
        throw new TerminalError('spec.target.pod is empty');
      },
      { onTerminalError: async (key, err) => void recorded.push(`${key}: ${(err as Error).message}`) },
    );
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(recorded).toEqual(['a: spec.target.pod is empty']));
    await new Promise((r) => setTimeout(r, 30)); // several backoff periods: nothing may come back
    expect(calls).toBe(1);
    expect(await metricValue(registry, 'amber_reconcile_total', { result: 'terminal' })).toBe(1);
    expect(await metricValue(registry, 'amber_workqueue_retries_total', {})).toBe(0);
  });

  it('HTTP 422 from the API server is terminal', async () => {
    const recorded: unknown[] = [];
    const { c } = make(
      async () => {
        throw new ApiException(422, 'Invalid', { message: 'bad' }, {});
      },
      { onTerminalError: async (_k, err) => void recorded.push(err) },
    );
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(recorded).toHaveLength(1));
  });

  it('retries when recording a terminal error fails', async () => {
    let records = 0;
    const { c } = make(
      async () => {
        throw new TerminalError('bad');
      },
      {
        onTerminalError: async () => {
          records++;
          if (records === 1) throw new Error('status write failed');
        },
      },
    );
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(records).toBe(2));
  });

  it('hands a catastrophic error to onCatastrophicError', async () => {
    const fatal: unknown[] = [];
    const { c } = make(
      async () => {
        throw new CatastrophicError('invariant broken');
      },
      { onCatastrophicError: (err) => fatal.push(err) },
    );
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(fatal).toHaveLength(1));
  });

  it('never reconciles one key on two workers at once', async () => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    const { c } = make(
      async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
      },
      { workers: 4 },
    );
    c.start();
    for (let i = 0; i < 20; i++) {
      c.enqueue('a');
      await new Promise((r) => setTimeout(r, 1));
    }
    await vi.waitFor(() => expect(running).toBe(0));
    expect(maxRunning).toBe(1);
    expect(calls).toBeGreaterThan(1);
  });

  it('runs different keys in parallel on several workers', async () => {
    let running = 0;
    let maxRunning = 0;
    const { c } = make(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
      },
      { workers: 3 },
    );
    c.start();
    ['a', 'b', 'c'].forEach((k) => c.enqueue(k));
    await vi.waitFor(() => expect(maxRunning).toBe(3));
  });

  it('stop() waits for the reconcile in flight and takes no new work', async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const started: string[] = [];
    let finished = 0;
    const { c } = make(async (key) => {
      started.push(key);
      await gate;
      finished++;
    });
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(started).toEqual(['a']));
    c.enqueue('b'); // waits: the only worker is busy
    const stopping = c.stop(5000);
    release();
    expect(await stopping).toBe(true);
    expect(finished).toBe(1);
    expect(started).toEqual(['a']);
  });

  it('stop() gives up after its timeout', async () => {
    const { c } = make(() => new Promise(() => {}));
    c.start();
    c.enqueue('a');
    await vi.waitFor(() => expect(c.queue.length).toBe(0));
    expect(await c.stop(20)).toBe(false);
  });

  it('reports the queue depth per controller', async () => {
    const registry = createRegistry();
    const { c } = make(async () => {}, { registry, name: 'cases' });
    make(async () => {}, { registry, name: 'policies' });
    c.enqueue('a');
    c.enqueue('b');
    expect(await metricValue(registry, 'amber_workqueue_depth', { controller: 'cases' })).toBe(2);
    expect(await metricValue(registry, 'amber_workqueue_depth', { controller: 'policies' })).toBe(0);
    expect(() => make(async () => {}, { registry, name: 'cases' })).toThrow(/already registered/);
  });

  it('enqueues keys for informer events, and owners for children', async () => {
    const pod = (name: string, owner?: string): KubernetesObject => ({
      metadata: {
        name,
        namespace: 'ns',
        resourceVersion: '1',
        ownerReferences: owner
          ? [{ apiVersion: 'forensics.amber.io/v1alpha1', kind: 'ForensicCase', name: owner, uid: 'u' }]
          : [],
      },
    });
    const source: ListWatch = {
      list: async () => ({ items: [pod('p1', 'case-1'), pod('p2')], resourceVersion: '1' }),
      watch: async () => () => {},
    };
    const informer = new Informer(source, { logger: silentLogger });
    const keys: string[] = [];
    const own = make(async (key) => void keys.push(`own ${key}`), { name: 'own' }).c;
    const owners = make(async (key) => void keys.push(`owner ${key}`), { name: 'owners' }).c;
    own.watch(informer);
    owners.watch(informer, ownerKeys('ForensicCase'));
    own.start();
    owners.start();
    informer.start();
    await vi.waitFor(() => expect(keys.sort()).toEqual(['own ns/p1', 'own ns/p2', 'owner case-1']));
    await informer.stop();
  });
});

describe('ownerKeys', () => {
  const child: KubernetesObject = {
    metadata: {
      name: 'job',
      namespace: 'ns',
      ownerReferences: [
        { apiVersion: 'forensics.amber.io/v1alpha1', kind: 'ForensicCase', name: 'case-1', uid: '1' },
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: '2' },
        { apiVersion: 'other.io/v1', kind: 'ForensicCase', name: 'imposter', uid: '3' },
      ],
    },
  };

  it('maps owner references of a kind to owner keys', () => {
    expect(ownerKeys('ForensicCase')(child)).toEqual(['case-1', 'imposter']);
    expect(ownerKeys('ForensicCase', { apiVersion: 'forensics.amber.io/v1alpha1' })(child)).toEqual([
      'case-1',
    ]);
    expect(ownerKeys('ReplicaSet', { namespaced: true })(child)).toEqual(['ns/rs']);
    expect(ownerKeys('Deployment')(child)).toEqual([]);
    expect(ownerKeys('ForensicCase')({ metadata: { name: 'x' } })).toEqual([]);
  });
});
