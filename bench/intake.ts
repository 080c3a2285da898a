// Alert storm through the real webhook over loopback HTTP: 10 pods flooding, keep-alive clients
// (wrk when installed, else a Node worker thread), the intake's engine writing to a real
// kube-apiserver when one is built (scripts/testenv-build.sh kube), else to an in-memory API
// (said in the output; AMBER_BENCH_MEMORY_API=1 asks for it).
// Each round runs three servers one after the other, in a rotating order: a bare fastify server
// that only parses the JSON and answers 202 (the physical baseline, issue 14), Amber's intake
// without the write-ahead log and with it (ADR 0014). Prints accepted alerts/s, latency, fsyncs
// (durable writes of the log, each one batch), API writes per run, then the medians and spreads
// of the rates, of the ratios taken within each round: Amber / bare (target >= 0.5) and with the
// log / without (target >= 0.8), of the server's CPU per alert, of the client's p99 latency and
// of the log's fsyncs per second.
//
//   npx tsx bench/intake.ts [seconds=5] [connections=32] [rounds=5]
//   AMBER_BENCH_PROFILE=/tmp/prof npx tsx bench/intake.ts 10 32 1   # a CPU profile of each load
//   npx tsx bench/cpuprofile-summary.ts /tmp/prof/<run>.cpuprofile    # where the time went
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { Worker } from 'node:worker_threads';
import Fastify from 'fastify';
import { ResponsePolicySpec } from '../src/api/responsepolicy.js';
import { buildIntakeApp } from '../src/intake/app.js';
import { IntakeEngine } from '../src/intake/engine.js';
import { kubeCaseApi, type CaseApi } from '../src/intake/kube.js';
import { createIntakeMetrics } from '../src/intake/metrics.js';
import { WriteAheadLog } from '../src/intake/wal.js';
import { silentLogger } from '../src/observability/logger.js';
import { createRegistry } from '../src/observability/metrics.js';

const TOKEN = 'bench-token-0123456789abcdef';
const PODS = 10;

/** The load generator, as plain JavaScript so the worker needs no TypeScript loader. */
const CLIENT = `
const { Agent, request } = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { port, seconds, connections, bodies, token } = workerData;
const agent = new Agent({ keepAlive: true, maxSockets: connections });
const deadline = Date.now() + seconds * 1000;
const latencies = [];
const statuses = {};
const one = (body) => new Promise((resolve, reject) => {
  const req = request({ host: '127.0.0.1', port, path: '/', method: 'POST', agent, headers: {
    authorization: 'Bearer ' + token, 'content-type': 'application/json; charset=utf-8',
    'user-agent': 'Falcosidekick', 'content-length': Buffer.byteLength(body) } }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode));
  });
  req.on('error', reject);
  req.end(body);
});
let i = 0;
Promise.all(Array.from({ length: connections }, async () => {
  while (Date.now() < deadline) {
    const started = process.hrtime.bigint();
    const status = await one(bodies[i++ % bodies.length]);
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
    statuses[status] = (statuses[status] || 0) + 1;
  }
})).then(() => {
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
  parentPort.postMessage({ requests: latencies.length, statuses, p50: q(0.5), p99: q(0.99), max: latencies[latencies.length - 1] });
});
`;

interface LoadResult {
  requests: number;
  statuses: Record<number, number>;
  p50: number;
  p99: number;
  max: number;
  generator?: string;
  /** CPU time of this process (the server) per accepted alert, µs; of it in the kernel. */
  cpuUsPerAlert?: number;
  sysUsPerAlert?: number;
}

function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

/** Runs wrk with a Lua script that cycles through the bodies; parses its report. */
async function runWrk(
  port: number,
  seconds: number,
  connections: number,
  bodies: string[],
): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'amber-wrk-'));
  const script = join(dir, 'flood.lua');
  writeFileSync(
    script,
    [
      `local bodies = { ${bodies.map((b) => `[==[${b}]==]`).join(', ')} }`,
      'local i = 0',
      'wrk.method = "POST"',
      `wrk.headers["Authorization"] = "Bearer ${TOKEN}"`,
      'wrk.headers["Content-Type"] = "application/json"',
      'wrk.headers["User-Agent"] = "Falcosidekick"',
      'request = function() i = i + 1; return wrk.format(nil, "/", nil, bodies[(i % #bodies) + 1]) end',
      'done = function(summary, latency, requests)',
      '  io.write(string.format("JSON {\\"requests\\":%d,\\"errors\\":%d,\\"p50\\":%f,\\"p99\\":%f,\\"max\\":%f}\\n",',
      '    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,',
      '    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))',
      'end',
    ].join('\n'),
  );
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn('wrk', [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '-s',
      script,
      `http://127.0.0.1:${port}/`,
    ]);
    let text = '';
    p.stdout.on('data', (d: Buffer) => (text += d.toString()));
    p.on('error', reject);
    p.on('close', () => resolve(text));
  });
  rmSync(dir, { recursive: true, force: true });
  const line = out.split('\n').find((l) => l.startsWith('JSON '));
  if (!line) throw new Error(`wrk printed no summary:\n${out}`);
  const r = JSON.parse(line.slice(5)) as {
    requests: number;
    errors: number;
    p50: number;
    p99: number;
    max: number;
  };
  return {
    requests: r.requests,
    statuses: r.errors ? { 202: r.requests - r.errors, 0: r.errors } : { 202: r.requests },
    p50: r.p50,
    p99: r.p99,
    max: r.max,
    generator: 'wrk',
  };
}

/** A run's accepted alerts per second and the server's CPU µs per accepted alert. */
interface Run {
  rate: number;
  cpu: number;
  /** Client latency p99, ms. */
  p99: number;
  /** The log's durable writes per second (with the log only). */
  fsyncsPerSecond?: number;
}

type Variant = 'bare' | 'without' | 'with' | 'serial';
const LABEL: Record<Variant, string> = {
  serial: 'AMBER with the log, one fdatasync at a time (before ADR 0019)',
  bare: 'BARE fastify (parse JSON, answer 202)',
  without: 'AMBER without the write-ahead log',
  with: 'AMBER with the write-ahead log',
};

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 5);
  // One variant alone, for a profile of the intake (node --cpu-prof): AMBER_BENCH_ONLY=with.
  // AMBER_BENCH_SERIAL=1 adds the log with one sync at a time, to compare with the pipelined one.
  const VARIANTS: readonly Variant[] = process.env.AMBER_BENCH_SERIAL
    ? ['bare', 'without', 'with', 'serial']
    : ['bare', 'without', 'with'];
  const only = process.env.AMBER_BENCH_ONLY as Variant | undefined;
  if (only !== undefined && !VARIANTS.includes(only))
    throw new Error(`AMBER_BENCH_ONLY must be one of ${VARIANTS.join(', ')}`);
  const fixture = readFileSync(
    join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-read-sensitive-file.json'),
    'utf8',
  );

  let api: CaseApi;
  let target: string;
  let stop = async () => {};
  try {
    if (process.env.AMBER_BENCH_MEMORY_API) throw new Error('AMBER_BENCH_MEMORY_API is set');
    const { startCluster } = await import('../test/testenv/kube.js');
    const { installCrds } = await import('../test/testenv/crds.js');
    const cluster = await startCluster();
    // A cluster that started must be stopped even when the bench cannot use it.
    await installCrds(cluster.kubeConfig()).catch(async (err: unknown) => {
      await cluster.stop();
      throw err;
    });
    api = kubeCaseApi(cluster.kubeConfig());
    target = 'real kube-apiserver';
    stop = () => cluster.stop();
  } catch (err) {
    const { MemoryCaseApi } = await import('../test/unit/intake/memory-api.js');
    api = new MemoryCaseApi();
    target = `in-memory API (no kube-apiserver: ${(err as Error).message.split('\n')[0]})`;
  }
  console.log(
    `intake bench: ${PODS} pods flooding, ${connections} keep-alive connections, ${seconds}s per run, ${rounds} rounds, load from ${hasWrk() ? 'wrk' : 'a Node worker'}, writes to ${target}`,
  );
  // The bare server, Amber without and Amber with the log in the same process against the same
  // API server, interleaved round by round (and in a rotating order within a round) so that a
  // drift in the machine's load falls on all three; ratios are taken within a round.
  const rates: Record<Variant, number[]> = { bare: [], without: [], with: [], serial: [] };
  const cpus: Record<Variant, number[]> = { bare: [], without: [], with: [], serial: [] };
  const p99s: Record<Variant, number[]> = { bare: [], without: [], with: [], serial: [] };
  const fsyncRates: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = only ? [only] : VARIANTS.map((_, k) => VARIANTS[(k + round) % VARIANTS.length]!);
    for (const variant of order) {
      const bodies = Array.from({ length: PODS * 10 }, (_, j) =>
        fixture
          .replaceAll('"hellofalco"', `"flood-${round}-${variant}-${j % PODS}"`)
          .replace('"Read sensitive file untrusted"', `"Read sensitive file untrusted ${j % 3}"`),
      );
      console.log(`round ${round + 1}/${rounds}, ${LABEL[variant]}:`);
      const run =
        variant === 'bare'
          ? await runBare(seconds, connections, bodies)
          : await runOnce(
              api,
              variant === 'without' ? undefined : variant === 'with' ? 3 : 1,
              seconds,
              connections,
              bodies,
            );
      rates[variant].push(run.rate);
      cpus[variant].push(run.cpu);
      p99s[variant].push(run.p99);
      if (variant === 'with' && run.fsyncsPerSecond !== undefined) fsyncRates.push(run.fsyncsPerSecond);
    }
  }
  await stop();
  if (only) {
    console.log(`  accepted alerts/s (${only}): ${describe(rates[only])}`);
    console.log(`  server CPU µs per alert (${only}): ${describe(cpus[only], 1)}`);
    return;
  }
  const ratios = (a: Variant, b: Variant) => rates[a].map((r, k) => r / rates[b][k]!);
  console.log('summary (median, and min..max over the rounds):');
  for (const v of VARIANTS) console.log(`  ${LABEL[v]}: ${describe(rates[v])} alerts/s`);
  console.log(
    `  Amber (with the log, as deployed) / bare fastify: ${describe(ratios('with', 'bare'), 2)} (target >= 0.50)`,
  );
  console.log(`  Amber without the log / bare fastify: ${describe(ratios('without', 'bare'), 2)}`);
  console.log(`  with the log / without: ${describe(ratios('with', 'without'), 2)} (target >= 0.80)`);
  if (VARIANTS.includes('serial'))
    console.log(`  with the log, one sync at a time / without: ${describe(ratios('serial', 'without'), 2)}`);
  // The same ratios from the server's CPU per alert (bare / Amber: higher is better, as above):
  // what the rates would be if the server alone decided them.
  const cpuRatios = (a: Variant, b: Variant) => cpus[b].map((c, k) => c / cpus[a][k]!);
  console.log('server CPU per accepted alert (µs, median and spread):');
  for (const v of VARIANTS) console.log(`  ${LABEL[v]}: ${describe(cpus[v], 1)}`);
  console.log(`  bare CPU / Amber with the log CPU: ${describe(cpuRatios('with', 'bare'), 2)}`);
  console.log(`  bare CPU / Amber without the log CPU: ${describe(cpuRatios('without', 'bare'), 2)}`);
  console.log(`  without CPU / with CPU: ${describe(cpuRatios('with', 'without'), 2)}`);
  console.log('client latency p99 (ms, median and spread):');
  for (const v of VARIANTS) console.log(`  ${LABEL[v]}: ${describe(p99s[v], 1)}`);
  console.log(`log fsyncs per second (with the log): ${describe(fsyncRates)}`);
}

/** Median, then min..max and every value in round order. */
function describe(xs: number[], digits = 0): string {
  const f = (x: number) => x.toFixed(digits);
  return `median ${f(median(xs))}, spread ${f(Math.min(...xs))}..${f(Math.max(...xs))} [${xs.map(f).join(' ')}]`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The physical baseline: fastify as it comes, parsing the JSON body and answering 202. */
async function runBare(seconds: number, connections: number, bodies: string[]): Promise<Run> {
  const app = Fastify({ logger: false });
  app.post('/', async (req, reply) => {
    void reply.code(202);
    return { accepted: true, rule: (req.body as { rule?: string }).rule };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as { port: number }).port;
  const started = Date.now();
  const result = await load(port, seconds, connections, bodies, 'bare');
  const elapsed = (Date.now() - started) / 1000;
  await app.close();
  const rate = Math.round((result.statuses[202] ?? 0) / elapsed);
  console.log(`  requests: ${result.requests}, statuses: ${JSON.stringify(result.statuses)}`);
  console.log(`  accepted alerts/s: ${rate}`);
  console.log(cpuLine(result));
  return { rate, cpu: result.cpuUsPerAlert ?? NaN, p99: result.p99 };
}

let profiled = 0;

/**
 * The server's CPU time (this process: every thread, user and system) per accepted alert over
 * the load: what the ratios are about, and far steadier than a rate on a shared machine.
 */
async function withCpu(running: Promise<LoadResult>): Promise<LoadResult> {
  const before = process.cpuUsage();
  const result = await running;
  const used = process.cpuUsage(before);
  const accepted = Math.max(1, result.statuses[202] ?? 0);
  return {
    ...result,
    cpuUsPerAlert: (used.user + used.system) / accepted,
    sysUsPerAlert: used.system / accepted,
  };
}

/**
 * The load, profiled when AMBER_BENCH_PROFILE names a directory: the main thread's CPU profile
 * of the load window only (no start-up, no API server), with the accepted alerts in its name
 * for bench/cpuprofile-summary.ts.
 */
async function load(
  port: number,
  seconds: number,
  connections: number,
  bodies: string[],
  label: string,
): Promise<LoadResult> {
  const dir = process.env.AMBER_BENCH_PROFILE;
  if (!dir) return withCpu(generate(port, seconds, connections, bodies));
  mkdirSync(dir, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  const result = await withCpu(generate(port, seconds, connections, bodies));
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  const file = join(dir, `${++profiled}-${label}-${result.statuses[202] ?? 0}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  console.log(`  profile: ${file}`);
  return result;
}

/**
 * wrk (Debian's package) costs far less CPU than a Node client; with two cores shared by the
 * server, the client and the API server, the load generator decides what is measured.
 */
function generate(port: number, seconds: number, connections: number, bodies: string[]): Promise<LoadResult> {
  return hasWrk()
    ? runWrk(port, seconds, connections, bodies)
    : new Promise<LoadResult>((resolve, reject) => {
        const w = new Worker(CLIENT, {
          eval: true,
          workerData: { port, seconds, connections, bodies, token: TOKEN },
        });
        w.once('message', resolve);
        w.once('error', reject);
      });
}

async function runOnce(
  api: CaseApi,
  /** fdatasyncs in flight; no log when undefined. */
  syncsInFlight: number | undefined,
  seconds: number,
  connections: number,
  bodies: string[],
): Promise<Run> {
  const counting = countCalls(api);
  const registry = createRegistry();
  const metrics = createIntakeMetrics(registry);
  const walDir = syncsInFlight ? mkdtempSync(join(tmpdir(), 'amber-bench-wal-')) : undefined;
  const opened = walDir
    ? await WriteAheadLog.open({
        baseDir: walDir,
        name: 'bench',
        maxBytes: 1024 * 1024 * 1024,
        logger: silentLogger,
        onBytes: (b) => metrics.logBytes.set(b),
        syncsInFlight,
      })
    : undefined;
  const engine = new IntakeEngine({
    api: counting.api,
    journal: opened?.wal,
    logger: silentLogger,
    metrics,
    limits: { maxCordonedNodesPercent: 100, maxCordonedNodes: 100 },
  });
  engine.setPolicies([
    {
      name: 'bench',
      spec: ResponsePolicySpec.parse({
        limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100 },
      }),
    },
  ]);
  engine.setClusterNodes(100);
  engine.start();
  const app = buildIntakeApp({ sink: engine, token: TOKEN, metrics, logger: silentLogger });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as { port: number }).port;

  const started = Date.now();
  const result = await load(port, seconds, connections, bodies, walDir ? 'with' : 'without');
  const elapsed = (Date.now() - started) / 1000;
  await app.close();
  await engine.stop(30_000);
  const rate = Math.round((result.statuses[202] ?? 0) / elapsed);

  const serverP99 = await histogramQuantile(registry, 0.99);
  console.log(`  requests: ${result.requests}, statuses: ${JSON.stringify(result.statuses)}`);
  console.log(`  accepted alerts/s: ${rate}`);
  console.log(cpuLine(result));
  console.log(
    `  client latency ms: p50 ${result.p50.toFixed(2)}, p99 ${result.p99.toFixed(2)}, max ${result.max.toFixed(2)}`,
  );
  console.log(`  server webhook p99 (histogram bucket bound): <= ${serverP99} s`);
  let fsyncsPerSecond: number | undefined;
  if (opened) {
    const accepted = result.statuses[202] ?? 0;
    fsyncsPerSecond = opened.wal.fsyncs / elapsed;
    console.log(
      `  fsyncs: ${opened.wal.fsyncs} (${fsyncsPerSecond.toFixed(0)}/s, ${(accepted / Math.max(1, opened.wal.fsyncs)).toFixed(1)} alerts per fsync); log bytes left after the drain: ${opened.wal.bytes}`,
    );
    await opened.wal.close();
    rmSync(walDir!, { recursive: true, force: true });
  }
  console.log(`  peak RSS of the process so far: ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
  console.log(`  API writes: ${JSON.stringify(counting.calls)}; alerts still queued: ${engine.queueDepth}`);
  return { rate, cpu: result.cpuUsPerAlert ?? NaN, p99: result.p99, fsyncsPerSecond };
}

function cpuLine(r: LoadResult): string {
  return `  server CPU per accepted alert: ${r.cpuUsPerAlert?.toFixed(1)} µs (of it system ${r.sysUsPerAlert?.toFixed(1)} µs)`;
}

function countCalls(api: CaseApi) {
  const calls = { create: 0, patch: 0, get: 0 };
  return {
    calls,
    api: {
      ...api,
      createCase: (b: object) => (calls.create++, api.createCase(b)),
      patchCaseStatus: (n: string, p: object) => (calls.patch++, api.patchCaseStatus(n, p)),
      getCase: (n: string) => (calls.get++, api.getCase(n)),
      createEvent: (ns: string, e: object) => api.createEvent(ns, e),
      countNodes: () => api.countNodes(),
    } satisfies CaseApi,
  };
}

async function histogramQuantile(registry: ReturnType<typeof createRegistry>, q: number): Promise<string> {
  const metric = (await registry.getSingleMetric('amber_webhook_duration_seconds')!.get()).values;
  const buckets = metric.filter(
    (v) => (v as { metricName?: string }).metricName?.endsWith('_bucket') && v.labels.status === '202',
  );
  const total = buckets.find((b) => b.labels.le === '+Inf')?.value ?? 0;
  const hit = buckets.find((b) => b.value >= total * q);
  return String(hit?.labels.le ?? 'n/a');
}

await main();
