import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toCollectOptions, type CollectCliOptions } from '../../../src/cmd/collect.js';
import { collectOptionsSchema, reportReserveMs } from '../../../src/collector/collect.js';
import { parseCheckpointName } from '../../../src/collector/logs.js';
import { defaultSnapshotterRoots } from '../../../src/collector/overlay.js';
import { CollectionReport, collectorMetrics } from '../../../src/collector/report.js';
import { ABANDON_AFTER_MS, CollectionRun } from '../../../src/collector/run.js';
import { cappedStream } from '../../../src/collector/safe-fs.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry } from '../../../src/observability/metrics.js';

describe('parseCheckpointName', () => {
  const ts = '2026-11-23T03:00:00Z';
  const cases: {
    name: string;
    file: string;
    containers?: string[];
    expect: ReturnType<typeof parseCheckpointName>;
  }[] = [
    {
      name: "the pod's container, named",
      file: `checkpoint-web_shop-app-${ts}.tar`,
      containers: ['app'],
      expect: { match: true, container: 'app', time: ts },
    },
    {
      name: 'a time with an offset and fractions',
      file: 'checkpoint-web_shop-app-2026-11-23T03:00:00.123+01:00.tar',
      containers: ['app'],
      expect: { match: true, container: 'app', time: '2026-11-23T03:00:00.123+01:00' },
    },
    {
      name: 'the same pod name in namespace shop-prod, container app (the bug: a prefix match took it)',
      file: `checkpoint-web_shop-prod-app-${ts}.tar`,
      containers: ['app'],
      expect: { match: false },
    },
    {
      name: 'a container whose name holds a dash, when the pod has it',
      file: `checkpoint-web_shop-prod-app-${ts}.tar`,
      containers: ['prod-app'],
      expect: { match: true, container: 'prod-app', time: ts },
    },
    {
      name: 'without container names, a dash makes it ambiguous: refused with the reason',
      file: `checkpoint-web_shop-prod-app-${ts}.tar`,
      expect: { match: false, reason: expect.stringMatching(/ambiguous/) as unknown as string },
    },
    {
      name: 'without container names, a plain one',
      file: `checkpoint-web_shop-app-${ts}.tar`,
      expect: { match: true, container: 'app', time: ts },
    },
    {
      name: 'another pod',
      file: `checkpoint-web2_shop-app-${ts}.tar`,
      containers: ['app'],
      expect: { match: false },
    },
    {
      name: 'a pod whose name extends ours',
      file: `checkpoint-web-x_shop-app-${ts}.tar`,
      containers: ['app'],
      expect: { match: false },
    },
    { name: 'no time', file: 'checkpoint-web_shop-app.tar', containers: ['app'], expect: { match: false } },
    {
      name: 'not a tar',
      file: `checkpoint-web_shop-app-${ts}.tar.gz`,
      containers: ['app'],
      expect: { match: false },
    },
    {
      name: 'not a container name',
      file: `checkpoint-web_shop-App_1-${ts}.tar`,
      expect: { match: false },
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      expect(parseCheckpointName(c.file, 'web', 'shop', c.containers)).toEqual(c.expect);
    });
});

describe('cappedStream: the cap counts bytes read', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-cap-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const MiB = 1024 * 1024;

  it('stops at the cap when the file grows after the first read, and says it was truncated', async () => {
    const path = join(dir, 'grows');
    writeFileSync(path, Buffer.alloc(MiB / 2, 1));
    const h = await open(path, 'r');
    try {
      const cap = 3 * MiB;
      const { stream, outcome } = cappedStream(h, cap);
      let total = 0;
      for await (const chunk of stream) {
        total += chunk.length;
        // After every read the suspect appends more than the cap: only bytes read count.
        appendFileSync(path, Buffer.alloc(4 * MiB, 2));
      }
      expect(total).toBe(cap);
      expect(outcome).toEqual({ bytes: cap, truncated: true });
    } finally {
      await h.close();
    }
  });

  it('copies a file of exactly the cap whole, not truncated', async () => {
    const path = join(dir, 'exact');
    writeFileSync(path, Buffer.alloc(MiB, 3));
    const h = await open(path, 'r');
    try {
      const { stream, outcome } = cappedStream(h, MiB);
      let total = 0;
      for await (const chunk of stream) total += chunk.length;
      expect(total).toBe(MiB);
      expect(outcome.truncated).toBe(false);
    } finally {
      await h.close();
    }
  });

  it('stops at the deadline with what it read', async () => {
    const path = join(dir, 'slow');
    writeFileSync(path, Buffer.alloc(4 * MiB, 4));
    const h = await open(path, 'r');
    try {
      const ac = new AbortController();
      const { stream, outcome } = cappedStream(h, 8 * MiB, ac.signal);
      let total = 0;
      for await (const chunk of stream) {
        total += chunk.length;
        ac.abort();
      }
      expect(total).toBe(MiB);
      expect(outcome.cut).toMatch(/deadline reached after 1048576 bytes/);
    } finally {
      await h.close();
    }
  });
});

describe('CollectionRun.step', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-run-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const newRun = (stepsUntil: number, perStepMs: number) => {
    const registry = createRegistry();
    const report = new CollectionReport(collectorMetrics(registry), {
      caseId: 'c',
      containerId: 'x',
      runtime: 'runc',
    });
    const store = new LocalEvidenceStore({ root: dir, registry });
    return new CollectionRun(
      store,
      report,
      silentLogger,
      { caseId: 'c', prefix: 'containers/x' },
      {
        stepsUntil,
        perStepMs,
      },
    );
  };

  it(
    'abandons a step that never settles (a read stuck in the kernel) and records it',
    async () => {
      const run = newRun(Infinity, 20);
      const r = await run.step('stuck', () => new Promise<never>(() => undefined));
      expect(r).toBeUndefined();
      expect(run.report.toJSON()).toMatchObject({
        complete: false,
        deadlines: [{ what: 'stuck', limitMs: 20, abandoned: true }],
        failed: [
          { what: 'stuck', reason: expect.stringMatching(/never returned: abandoned/) as unknown as string },
        ],
      });
    },
    ABANDON_AFTER_MS + 5000,
  );

  it('lets a step that honours its signal finish with what it has, recorded as cut short', async () => {
    const run = newRun(Infinity, 10);
    const r = await run.step(
      'tar',
      (signal) =>
        new Promise<string>((resolve) => signal.addEventListener('abort', () => resolve('partial'))),
    );
    expect(r).toBe('partial');
    expect(run.report.deadlines).toEqual([{ what: 'tar', limitMs: 10, abandoned: false }]);
  });

  it('starts nothing once the run is past its deadline, and says so', async () => {
    const run = newRun(Date.now() - 1, 1000);
    let started = false;
    await run.step('late', async () => {
      started = true;
    });
    expect(started).toBe(false);
    expect(run.report.skipped).toEqual([
      { what: 'late', reason: "the run's deadline was reached before this started" },
    ]);
  });

  it('records an error as a gap and returns nothing', async () => {
    const run = newRun(Infinity, 1000);
    expect(await run.step('boom', () => Promise.reject(new Error('EIO: bad disk')))).toBeUndefined();
    expect(run.report.failed).toEqual([{ what: 'boom', reason: 'EIO: bad disk' }]);
  });
});

describe('deadline options', () => {
  it('keeps 10% of the run for the report, at least 1 s and at most 20 s', () => {
    expect(reportReserveMs(600)).toBe(20_000);
    expect(reportReserveMs(60)).toBe(6000);
    expect(reportReserveMs(5)).toBe(1000);
  });

  const base = {
    containerId: 'a'.repeat(64),
    runtime: 'auto',
    case: 'c1',
    region: 'us-east-1',
    pathStyle: false,
    retentionMode: 'COMPLIANCE',
    retentionPeriod: '90d',
    legalHold: false,
    fullRootfs: false,
    memory: true,
    procRoot: '/proc',
    hostRoot: '/',
    hostPid: '1',
    terminationMessagePath: '/dev/termination-log',
  } satisfies CollectCliOptions;

  it('maps --deadline and --step-timeout, and refuses what is not a number of seconds', () => {
    expect(toCollectOptions({ ...base, deadline: '570', stepTimeout: '60' })).toMatchObject({
      deadlineSeconds: 570,
      stepTimeoutSeconds: 60,
    });
    expect(() => toCollectOptions({ ...base, deadline: '10m' })).toThrow(
      /--deadline: expected a positive number/,
    );
    expect(() => toCollectOptions({ ...base, stepTimeout: '0' })).toThrow(/--step-timeout/);
  });

  it('maps repeated --snapshotter-root, keeps the defaults without it, and refuses a relative root', () => {
    const roots = [
      '/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots',
      '/srv/l',
    ];
    expect(toCollectOptions({ ...base, snapshotterRoot: roots })).toMatchObject({ snapshotterRoots: roots });
    expect(collectOptionsSchema.parse(toCollectOptions(base)).snapshotterRoots).toEqual(
      defaultSnapshotterRoots,
    );
    const relative = collectOptionsSchema.safeParse(
      toCollectOptions({ ...base, snapshotterRoot: ['snapshots'] }),
    );
    expect(relative.success).toBe(false);
  });
});
