import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../../src/api/common.js';
import { FORENSIC_CASE } from '../../../src/api/forensiccase.js';
import { RESPONSE_POLICY } from '../../../src/api/responsepolicy.js';
import { decodeFrames, encodeFrame } from '../../../src/intake/walframe.js';
import { installCrds } from '../../testenv/crds.js';
import { postLikeFalcosidekick } from '../../testenv/falcosidekick.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { freePort } from '../../testenv/ports.js';
import { CuttableProxy, throughProxy } from '../../testenv/proxy.js';
import { OPERATOR_NAMESPACE, operatorKubeConfig } from '../../testenv/rbac.js';
import { Workloads } from '../../testenv/workload.js';

/**
 * The intake's write-ahead log (ADR 0014) with the real `amber operator` process and a real
 * kube-apiserver it reaches through a TCP proxy the test cuts (an API server outage for the
 * operator only). Alerts answered 202 during the outage, then SIGKILL, then a new operator on the
 * same log: every alert is counted exactly once.
 */

const TOKEN = 'wal-integration-token-0123456789';
const AMBER = join(import.meta.dirname, '..', '..', '..', 'src', 'cmd', 'amber.ts');
const fixture = readFileSync(
  join(import.meta.dirname, '..', '..', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);
let uuid = 0;
/** The fixture aimed at a pod, with its own uuid (as Falcosidekick gives every event). */
const alertFor = (pod: string, pad = '') => {
  const body = JSON.parse(fixture) as Record<string, unknown> & { output_fields: Record<string, unknown> };
  body.output_fields['k8s.pod.name'] = pod;
  body.uuid = `00000000-0000-4000-8000-${String(++uuid).padStart(12, '0')}`;
  if (pad) body.output = `${String(body.output)} ${pad}`;
  return JSON.stringify(body);
};

/**
 * `amber operator` as the node process itself (`node --import tsx`, no npx or tsx wrapper in
 * between), in its own process group, so SIGKILL reaches exactly the process that holds the log.
 */
class Operator {
  private exited: Promise<void>;
  private gone = false;
  private constructor(
    readonly child: ChildProcess,
    readonly logFile: string,
    readonly intakeUrl: string,
    readonly metricsUrl: string,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        this.gone = true;
        resolve();
      }),
    );
    running.add(this);
  }

  static async start(
    name: string,
    dir: string,
    kubeconfig: string,
    env: Record<string, string>,
  ): Promise<Operator> {
    const logFile = join(dir, `${name}.log`);
    const out = openSync(logFile, 'a');
    const intakePort = await freePort();
    const metricsPort = await freePort();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        AMBER,
        'operator',
        '--kubeconfig',
        kubeconfig,
        '--no-leader-election',
        '--metrics-port',
        String(metricsPort),
      ],
      {
        detached: true,
        stdio: ['ignore', out, out],
        env: {
          ...process.env,
          AMBER_NAMESPACE: OPERATOR_NAMESPACE,
          AMBER_COLLECTION_MODE: 'off',
          AMBER_INTAKE_TOKEN: TOKEN,
          AMBER_INTAKE_PORT: String(intakePort),
          ...env,
        },
      },
    );
    closeSync(out);
    const op = new Operator(
      child,
      logFile,
      `http://127.0.0.1:${intakePort}`,
      `http://127.0.0.1:${metricsPort}/metrics`,
    );
    await op.waitForLog('operator started', 90_000);
    return op;
  }

  log(): string {
    return readFileSync(this.logFile, 'utf8');
  }

  /** The first log line (parsed) whose msg starts with `msg`. */
  logLine(msg: string): Record<string, unknown> | undefined {
    for (const line of this.log().split('\n')) {
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as { msg?: string };
      if (parsed.msg?.startsWith(msg)) return parsed;
    }
    return undefined;
  }

  async waitForLog(msg: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.logLine(msg);
      if (line) return line;
      if (this.gone) throw new Error(`operator exited before "${msg}":\n${this.log().slice(-3000)}`);
      if (Date.now() > deadline)
        throw new Error(`no "${msg}" after ${timeoutMs} ms:\n${this.log().slice(-3000)}`);
      await sleep(100);
    }
  }

  async metric(name: string): Promise<number> {
    const text = await (await fetch(this.metricsUrl)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').at(-1)) : NaN;
  }

  post(body: string) {
    return postLikeFalcosidekick(this.intakeUrl, body, { Authorization: `Bearer ${TOKEN}` });
  }

  /** A crash: SIGKILL to the process group; returns once the process is gone. */
  async kill(): Promise<void> {
    process.kill(-this.child.pid!, 'SIGKILL');
    await this.exited;
    running.delete(this);
    expect(this.child.signalCode).toBe('SIGKILL');
    expect(() => process.kill(this.child.pid!, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  }

  async stop(): Promise<void> {
    if (this.gone) return;
    process.kill(-this.child.pid!, 'SIGTERM');
    const timer = setTimeout(() => !this.gone && process.kill(-this.child.pid!, 'SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
    running.delete(this);
  }
}
const running = new Set<Operator>();
process.once('exit', () => {
  for (const op of running) if (op.child.pid) process.kill(-op.child.pid, 'SIGKILL');
});

let cluster: Cluster;
let proxy: CuttableProxy;
let kubeconfig: string;
let objects: CustomObjectsApi;

interface CaseView {
  metadata: { name: string };
  spec: { target: { pod: string } };
  status?: { alerts?: { count: number; logMarks?: Record<string, number> } };
}

async function listCases(): Promise<CaseView[]> {
  const list = (await objects.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: FORENSIC_CASE.plural,
  })) as { items: CaseView[] };
  return list.items;
}

/** Per pod, the alerts counted over all its cases. */
async function countsByPod(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of await listCases())
    out[c.spec.target.pod] = (out[c.spec.target.pod] ?? 0) + (c.status?.alerts?.count ?? 0);
  return out;
}

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: last ${JSON.stringify(v)}`);
    await sleep(200);
  }
}

beforeAll(async () => {
  cluster = await startCluster();
  const admin = cluster.kubeConfig();
  await installCrds(admin);
  objects = admin.makeApiClient(CustomObjectsApi);
  await objects.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: RESPONSE_POLICY.plural,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: RESPONSE_POLICY.kind,
      metadata: { name: 'contain-shells' },
      spec: {
        match: { minimumPriority: 'Notice' },
        limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100 },
      },
    },
  });
  // Real pods (never running: no kubelet), so the cases stay open and later alerts attach.
  await new Workloads(admin).node('node-w');
  const core = admin.makeApiClient(CoreV1Api);
  await core
    .createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'default' } } })
    .catch(() => undefined);
  for (const pod of ['web-0', 'web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'full-0'])
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: pod, labels: { app: 'web' } },
        spec: { nodeName: 'node-w', containers: [{ name: 'app', image: 'app:1' }] },
      },
    });
  proxy = await CuttableProxy.start(Number(new URL(cluster.server).port));
  kubeconfig = join(cluster.dir, 'operator-via-proxy.kubeconfig');
  writeFileSync(kubeconfig, throughProxy(await operatorKubeConfig(cluster), proxy).exportConfig());
}, 120_000);

afterAll(async () => {
  for (const op of running) await op.stop();
  await proxy?.close();
  await cluster?.stop();
});

describe('amber operator with a write-ahead log, killed during an API server outage', () => {
  it('counts every alert answered 202 exactly once after SIGKILL and a restart', async () => {
    const walDir = mkdtempSync(join(tmpdir(), 'amber-wal-it-'));
    const env = { AMBER_WAL_DIR: walDir, AMBER_WAL_NAME: 'amber-operator-0' };
    const dir = mkdtempSync(join(cluster.dir, 'crash-'));
    let op = await Operator.start('operator-1', dir, kubeconfig, env);

    // Three pods with a case before the outage; during it their alerts attach, and three
    // more pods' alerts open cases that cannot be created yet.
    const before = ['web-0', 'web-1', 'web-2'];
    const during = ['web-3', 'web-4', 'web-5'];
    for (const pod of before) expect((await op.post(alertFor(pod))).status).toBe(202);
    await until('cases before the outage', countsByPod, (c) => before.every((p) => c[p] === 1));

    proxy.cut();
    const perPod = 20;
    const answers = await Promise.all(
      [...before, ...during].flatMap((pod) => Array.from({ length: perPod }, () => op.post(alertFor(pod)))),
    );
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 202));
    const named = new Set(answers.map((a) => (JSON.parse(a.body) as { case: string }).case));
    expect(
      answers.filter((a) => (JSON.parse(a.body) as { outcome: string }).outcome === 'opened'),
    ).toHaveLength(during.length);
    expect(await op.metric('amber_intake_log_bytes')).toBeGreaterThan(0);

    await op.kill();

    // A crash mid-append leaves part of a record after the last one of the newest segment:
    // where the next record goes, over the zeros written ahead of the records (ADR 0029).
    const own = join(walDir, 'amber-operator-0');
    const newest = readdirSync(own)
      .filter((f) => f.endsWith('.wal'))
      .sort()
      .at(-1)!;
    const torn = encodeFrame(Buffer.from(JSON.stringify({ seq: 999_999, body: { case: 'garbage' } })));
    const segmentFile = join(own, newest);
    const recordsEnd = decodeFrames(readFileSync(segmentFile)).validBytes;
    const fd = openSync(segmentFile, 'r+');
    writeSync(fd, torn.subarray(0, torn.length - 7), 0, torn.length - 7, recordsEnd);
    closeSync(fd);

    proxy.restore();
    op = await Operator.start('operator-2', dir, kubeconfig, env);
    const tornLine = await op.waitForLog('torn record in the write-ahead log skipped');
    expect(tornLine).toMatchObject({ reason: 'short-record', segment: join(own, newest) });
    const replayed = await op.waitForLog('write-ahead log replayed');
    // The three alerts written before the outage are still in the log (its segment was not
    // full): the cases' marks say they were counted.
    expect(replayed).toMatchObject({
      records: 6 * perPod + before.length,
      replayed: 6 * perPod,
      alreadyCounted: before.length,
    });

    console.log(
      `wal crash: ${answers.length} alerts answered 202 during the outage; after SIGKILL: ${JSON.stringify(replayed)}; torn: ${JSON.stringify(tornLine)}`,
    );
    const want = Object.fromEntries([
      ...before.map((p) => [p, perPod + 1]),
      ...during.map((p) => [p, perPod]),
    ]);
    await until('every alert counted', countsByPod, (c) => JSON.stringify(c) === JSON.stringify(want));
    // Every case an answer named exists; no case for the torn record's garbage.
    const names = new Set((await listCases()).map((c) => c.metadata.name));
    for (const n of named) expect(names.has(n), n).toBe(true);
    expect(names.size).toBe(6);
    // Drained: nothing queued, the replayed segments deleted.
    await until(
      'log drained',
      () => op.metric('amber_intake_log_bytes'),
      (b) => b === 0,
    );
    expect(await op.metric('amber_intake_queue_depth')).toBe(0);
    await until(
      'segments deleted',
      async () => readdirSync(own).filter((f) => f.endsWith('.wal')),
      (files) => files.length === 0,
    );

    // A third start on the same log counts nothing twice.
    await op.kill();
    op = await Operator.start('operator-3', dir, kubeconfig, env);
    expect(op.logLine('write-ahead log opened')).toMatchObject({ records: 0 });
    expect(await countsByPod()).toEqual(want);
    await op.stop();
  }, 240_000);

  it('answers 503 log-full past the log size, and accepts again once it drained', async () => {
    const walDir = mkdtempSync(join(tmpdir(), 'amber-wal-it-'));
    const dir = mkdtempSync(join(cluster.dir, 'full-'));
    const op = await Operator.start('operator-full', dir, kubeconfig, {
      AMBER_WAL_DIR: walDir,
      AMBER_WAL_NAME: 'amber-operator-1',
      AMBER_WAL_MAX_BYTES: String(1024 * 1024),
    });
    proxy.cut();
    const pad = 'x'.repeat(1800);
    let accepted = 0;
    let refused: { status: number; body: string } | undefined;
    for (let i = 0; i < 2000 && !refused; i++) {
      const res = await op.post(alertFor('full-0', pad));
      if (res.status === 202) accepted++;
      else refused = res;
    }
    expect(accepted).toBeGreaterThan(100);
    expect(refused?.status).toBe(503);
    expect(JSON.parse(refused!.body)).toMatchObject({ error: { code: 'log-full' } });
    expect(await op.metric('amber_intake_log_bytes')).toBeGreaterThan(1024 * 1024 - 8192);
    expect(await op.metric('amber_intake_log_limit_bytes')).toBe(1024 * 1024);
    const rejected = (await (await fetch(op.metricsUrl)).text())
      .split('\n')
      .find((l) => l.startsWith('amber_alerts_rejected_total{reason="log-full"}'));
    expect(rejected).toBe('amber_alerts_rejected_total{reason="log-full"} 1');

    proxy.restore();
    await until('every accepted alert counted', countsByPod, (c) => c['full-0'] === accepted);
    await until(
      'log drained',
      () => op.metric('amber_intake_log_bytes'),
      (b) => b === 0,
    );
    expect((await op.post(alertFor('full-0', pad))).status).toBe(202);
    await until('the new alert counted', countsByPod, (c) => c['full-0'] === accepted + 1);
    await op.stop();
  }, 240_000);
});
