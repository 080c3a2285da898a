import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import { IntakeEngine, type Journal } from '../../../src/intake/engine.js';
import type { Alert } from '../../../src/intake/falco.js';
import type { CaseApi } from '../../../src/intake/kube.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import { WriteAheadLog } from '../../../src/intake/wal.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { MemoryCaseApi } from './memory-api.js';

/**
 * Replay after a crash, at every point a crash can fall: the engine against an in-memory API
 * server and a real write-ahead log on disk. A "crash" cuts the old engine off from both (a dead
 * process writes nothing more); the next run opens the same log directory.
 */

class FlakyApi extends MemoryCaseApi {
  /** Patches that succeed before the server becomes unreachable. */
  patchBudget = Infinity;
  /** Patches applied whose answer is then lost (a reset connection). */
  loseAnswers = 0;

  override async patchCaseStatus(
    name: string,
    patch: Parameters<MemoryCaseApi['patchCaseStatus']>[1],
  ): ReturnType<MemoryCaseApi['patchCaseStatus']> {
    if (this.patchBudget <= 0)
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    this.patchBudget--;
    const res = await super.patchCaseStatus(name, patch);
    if (this.loseAnswers > 0) {
      this.loseAnswers--;
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    }
    return res;
  }
}

/** A method-by-method gate: after crash(), every call fails and nothing reaches the target. */
function gated<T extends object>(target: T): { value: T; crash: () => void } {
  let alive = true;
  const value = new Proxy(target, {
    get(t, key) {
      const v = (t as Record<PropertyKey, unknown>)[key];
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (!alive) return key === 'done' ? undefined : Promise.reject(new Error('process gone'));
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
  return { value, crash: () => (alive = false) };
}

let n = 0;
const alert = (pod: string): Alert => {
  n++;
  return {
    rule: 'Terminal shell in container',
    priority: 'Critical',
    time: `2024-01-01T00:00:00.${String(n).padStart(9, '0')}Z`,
    timeNs: 1704067200000000000n + BigInt(n),
    source: 'syscall',
    tags: [],
    fields: {},
    target: { namespace: 'shop', pod },
    hostname: 'node-a',
    uuid: `uuid-${n}`,
  };
};

async function startRun(dir: string, api: FlakyApi) {
  const { wal, recovered } = await WriteAheadLog.open({
    baseDir: dir,
    name: 'amber-0',
    maxBytes: 64 * 1024 * 1024,
    logger: silentLogger,
  });
  const apiGate = gated<CaseApi>(api);
  const walGate = gated<Journal>(wal);
  const engine = new IntakeEngine({
    api: apiGate.value,
    journal: walGate.value,
    logger: silentLogger,
    metrics: createIntakeMetrics(createRegistry()),
    limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100 },
    backoff: { baseMs: 0, maxMs: 0 },
  });
  engine.setPolicies([{ name: 'shells', spec: ResponsePolicySpec.parse({}) }]);
  engine.setClusterNodes(100);
  // The informer's initial list: what the API server has, marks included.
  for (const c of api.cases.values()) engine.observeCase(structuredClone(c));
  const restored = engine.restore(recovered);
  return {
    engine,
    wal,
    restored,
    /** Accepts alerts and waits until each is on disk, as the webhook does before its 202. */
    async post(pods: string[], perPod: number) {
      const durable: Array<Promise<void> | undefined> = [];
      for (let i = 0; i < perPod; i++)
        for (const pod of pods) {
          const out = engine.accept(alert(pod));
          expect(out.outcome).toMatch(/opened|attached/);
          durable.push('durable' in out ? out.durable : undefined);
        }
      expect(durable.every(Boolean)).toBe(true);
      await Promise.all(durable);
    },
    /** Writes until nothing waits or a pass fails `tries` times. */
    async drain(tries = 20) {
      for (let i = 0; i < tries && engine.queueDepth > 0; i++) await engine.flush();
    },
    crash() {
      apiGate.crash();
      walGate.crash();
    },
  };
}

const counts = (api: MemoryCaseApi): Record<string, number> =>
  Object.fromEntries([...api.cases.values()].map((c) => [c.spec?.target?.pod, c.status?.alerts?.count ?? 0]));
const pods = ['web-1', 'web-2', 'web-3'];
const expected = (perPod: number) => Object.fromEntries(pods.map((p) => [p, perPod]));

type Scenario = [
  name: string,
  beforeCrash: (api: FlakyApi, run: Awaited<ReturnType<typeof startRun>>) => Promise<void>,
];

const scenarios: Scenario[] = [
  [
    'the API server away the whole time: nothing was written',
    async (api, run) => {
      api.down = true;
      await run.post(pods, 5);
      await run.drain(3);
    },
  ],
  [
    'everything written, the log not yet truncated',
    async (_api, run) => {
      await run.post(pods, 5);
      await run.drain();
    },
  ],
  [
    'the cases created, some counts written, then the API server went away',
    async (api, run) => {
      api.patchBudget = 1;
      await run.post(pods, 5);
      await run.drain(3);
      expect(Object.values(counts(api)).filter((c) => c > 0).length).toBe(1);
    },
  ],
  [
    'a count patch applied whose answer was lost, then the crash',
    async (api, run) => {
      api.loseAnswers = 1;
      api.patchBudget = 1;
      await run.post(pods, 5);
      await run.drain(3);
      expect(Object.values(counts(api)).filter((c) => c > 0).length).toBe(1);
    },
  ],
  [
    'answers lost and retried within the run (the marks settle them)',
    async (api, run) => {
      api.loseAnswers = 2;
      await run.post(pods, 5);
      await run.drain();
      expect(api.loseAnswers).toBe(0);
      expect(counts(api)).toEqual(expected(5));
    },
  ],
  [
    'alerts written in two batches, the second one still on its way',
    async (api, run) => {
      await run.post(pods, 2);
      await run.drain();
      api.patchBudget = 0;
      await run.post(pods, 3);
      await run.drain(3);
      expect(counts(api)).toEqual(expected(2));
    },
  ],
];

describe('write-ahead log replay counts every alert exactly once', () => {
  it.each(scenarios)('%s', async (_name, beforeCrash) => {
    const dir = mkdtempSync(join(tmpdir(), 'amber-replay-'));
    const api = new FlakyApi();
    const first = await startRun(dir, api);
    await beforeCrash(api, first);
    first.crash();

    api.down = false;
    api.patchBudget = Infinity;
    api.loseAnswers = 0;
    const second = await startRun(dir, api);
    await second.drain();
    expect(second.engine.queueDepth).toBe(0);
    expect(counts(api)).toEqual(expected(5));
    expect([...api.cases.keys()].sort()).toEqual(
      pods.map((pod) => caseNameFor({ namespace: 'shop', pod })).sort(),
    );

    // A crash right after the replay, before the log was truncated: the third run counts nothing twice.
    second.crash();
    const third = await startRun(dir, api);
    await third.drain();
    expect(counts(api)).toEqual(expected(5));
    expect(third.restored.replayed).toBe(0);
    // And the log empties once everything is known to be on the API server.
    third.wal.done([]);
    await third.wal.close();
  });

  it('replays the records of two runs of the same replica into one case', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amber-replay-'));
    const api = new FlakyApi();
    const first = await startRun(dir, api);
    await first.post(['web-9'], 3);
    await first.drain();
    first.crash();
    const second = await startRun(dir, api);
    expect(second.restored).toEqual({ replayed: 0, counted: 3 });
    api.down = true;
    await second.post(['web-9'], 4);
    await second.drain(2);
    second.crash();
    api.down = false;
    const third = await startRun(dir, api);
    expect(third.restored).toEqual({ replayed: 4, counted: 0 });
    await third.drain();
    expect(counts(api)).toEqual({ 'web-9': 7 });
    const marks = [...api.cases.values()][0]!.status!.alerts!.logMarks!;
    expect(Object.values(marks).sort()).toEqual([3, 4]); // one mark per run that wrote to it
    await third.wal.close();
  });
});
