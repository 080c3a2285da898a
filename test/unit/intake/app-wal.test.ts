import { mkdtempSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ResponsePolicySpec } from '../../../src/api/responsepolicy.js';
import { buildIntakeApp } from '../../../src/intake/app.js';
import { IntakeEngine, type Journal } from '../../../src/intake/engine.js';
import { createIntakeMetrics } from '../../../src/intake/metrics.js';
import { LogWriteError, WriteAheadLog } from '../../../src/intake/wal.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { MemoryCaseApi } from './memory-api.js';

const TOKEN = 'test-token-0123456789abcdef';
const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const shell = readFileSync(
  join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
);

async function setup(journal: (wal: WriteAheadLog) => Journal, maxBytes = 1024 * 1024) {
  const { wal } = await WriteAheadLog.open({
    baseDir: mkdtempSync(join(tmpdir(), 'amber-app-wal-')),
    name: 'amber-0',
    maxBytes,
    logger: silentLogger,
  });
  const api = new MemoryCaseApi();
  api.down = true; // nothing reaches the API server: the log is all there is
  const registry = createRegistry();
  const metrics = createIntakeMetrics(registry);
  const engine = new IntakeEngine({ api, journal: journal(wal), logger: silentLogger, metrics });
  engine.setPolicies([{ name: 'all', spec: ResponsePolicySpec.parse({}) }]);
  engine.setClusterNodes(100);
  const app = buildIntakeApp({ sink: engine, token: TOKEN, metrics, logger: silentLogger });
  const post = () => app.inject({ method: 'POST', url: '/', headers, payload: shell });
  return { app, wal, engine, registry, post };
}

describe('intake webhook with a write-ahead log', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of closers) await c();
  });

  it('answers 202 only once the alert is on disk', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let onDisk: Promise<void> | undefined;
    const { app, wal, post } = await setup((wal) => ({
      append: (r) => {
        const out = wal.append(r);
        onDisk = out.durable;
        return { token: out.token, durable: Promise.all([out.durable, gate]).then(() => {}) };
      },
      done: (t) => wal.done(t),
    }));
    closers.push(
      () => app.close(),
      () => wal.close(),
    );
    let answered = false;
    const res = post().then((r) => {
      answered = true;
      return r;
    });
    while (!onDisk) await new Promise((r) => setImmediate(r));
    await onDisk; // fsynced; the answer still waits for the gate
    expect(answered).toBe(false);
    release();
    expect((await res).statusCode).toBe(202);
  });

  it('answers 503 log-full once the log is at its size, and counts the refusal', async () => {
    const { app, wal, post, engine, registry } = await setup((wal) => wal, 6 * 1024);
    closers.push(
      () => app.close(),
      () => wal.close(),
    );
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await post()).statusCode);
    expect(statuses[0]).toBe(202);
    const firstRefusal = statuses.indexOf(503);
    expect(firstRefusal).toBeGreaterThan(0);
    expect(statuses.slice(firstRefusal).every((s) => s === 503)).toBe(true);
    const refused = await post();
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json()).toEqual({
      error: { code: 'log-full', message: expect.stringContaining('limit') },
    });
    // A refused alert is not kept anywhere: the queue holds only the accepted ones.
    expect(engine.queueDepth).toBe(firstRefusal);
    const metric = await registry.getSingleMetricAsString('amber_alerts_rejected_total');
    expect(metric).toContain(`amber_alerts_rejected_total{reason="log-full"} ${20 - firstRefusal + 1}`);
  });

  it('answers 503 log-write-failed when the append cannot be made durable', async () => {
    const { app, wal, post } = await setup((wal) => ({
      append: (r) => {
        const out = wal.append(r);
        return { token: out.token, durable: Promise.reject(new LogWriteError('disk gone')) };
      },
      done: (t) => wal.done(t),
    }));
    closers.push(
      () => app.close(),
      () => wal.close(),
    );
    const res = await post();
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe('log-write-failed');
  });
});
