// Where an alert's time goes inside the intake, stage by stage, without HTTP: the same Falco event
// (as bench/intake.ts posts it) through each step the webhook takes, timed in a tight loop. Prints
// microseconds of CPU per alert per stage; the HTTP/socket share is what bench/intake.ts adds on top.
//
//   npx tsx bench/intake-stages.ts [iterations=20000] [rounds=7]
//
// The stages run interleaved, round after round, and each prints its median over the rounds
// and the spread: on a shared machine one slow round must not decide.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ResponsePolicySpec } from '../src/api/responsepolicy.js';
import { bearerExpectation, bearerMatches } from '../src/intake/app.js';
import { IntakeEngine } from '../src/intake/engine.js';
import { FalcoEvent, parseFalcoBody, toAlert, wellFormedEvent } from '../src/intake/falco.js';
import { parseJsonExact } from '../src/intake/json.js';
import type { WalToken } from '../src/intake/wal.js';
import { encodeFrame } from '../src/intake/walframe.js';
import { createIntakeMetrics } from '../src/intake/metrics.js';
import { silentLogger } from '../src/observability/logger.js';
import { createRegistry } from '../src/observability/metrics.js';
import { MemoryCaseApi } from '../test/unit/intake/memory-api.js';

const TOKEN = 'bench-token-0123456789abcdef';
const n = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 7);
const fixture = readFileSync(
  join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-read-sensitive-file.json'),
  'utf8',
);
const bodies = Array.from({ length: 100 }, (_, j) =>
  Buffer.from(
    fixture
      .replaceAll('"hellofalco"', `"flood-${j % 10}"`)
      .replace('"Read sensitive file untrusted"', `"Read sensitive file untrusted ${j % 3}"`),
  ),
);
const texts = bodies.map((b) => b.toString('utf8'));
const raws = texts.map((t) => parseJsonExact(t));
const events = bodies.map((b) => parseFalcoBody(b));
const alerts = events.map((e) => toAlert(e));

const metrics = createIntakeMetrics(createRegistry());
/** An engine per variant: without a log, and with a journal that encodes the record as the log does (no I/O). */
function engine(withLog: boolean): IntakeEngine {
  let seq = 0;
  const e = new IntakeEngine({
    api: new MemoryCaseApi(),
    logger: silentLogger,
    metrics,
    limits: { maxCordonedNodesPercent: 100, maxCordonedNodes: 100 },
    queue: { maxQueuedAlerts: 100_000_000 },
    journal: withLog
      ? {
          append: (body) => {
            seq++;
            encodeFrame(Buffer.from(JSON.stringify({ seq, body })));
            return { token: { log: 'bench', seq } as WalToken, durable: Promise.resolve() };
          },
          done: () => {},
        }
      : undefined,
  });
  e.setPolicies([
    {
      name: 'bench',
      spec: ResponsePolicySpec.parse({
        limits: { maxOpenCases: 100, maxCordonedNodes: 100, maxCordonedNodesPercent: 100 },
      }),
    },
  ]);
  e.setClusterNodes(100);
  return e;
}
const bare = engine(false);
const logged = engine(true);
const expected = bearerExpectation(TOKEN);
const header = `Bearer ${TOKEN}`;
const decoder = new TextDecoder('utf-8', { fatal: true });

const stages: Array<[string, (i: number) => unknown]> = [
  ['bearer token check', () => bearerMatches(header, expected)],
  ['UTF-8 decode, checked', (i) => decoder.decode(bodies[i % 100])],
  ['JSON.parse alone (what bare fastify does)', (i) => JSON.parse(texts[i % 100]!)],
  ['JSON parse, exact int64', (i) => parseJsonExact(texts[i % 100]!)],
  ['validation by the schema library (FalcoEvent)', (i) => FalcoEvent.safeParse(raws[i % 100])],
  ['validation, hand-written fast path', (i) => wellFormedEvent(raws[i % 100])],
  ['parseFalcoBody (decode + parse + validate)', (i) => parseFalcoBody(bodies[i % 100]!)],
  ['toAlert (target, time)', (i) => toAlert(events[i % 100]!)],
  ['engine.accept (policies, dedup, limits)', (i) => bare.accept(alerts[i % 100]!)],
  ['engine.accept + the log record encoded', (i) => logged.accept(alerts[i % 100]!)],
  ['metrics: histogram observe', () => metrics.webhookDuration.observe({ status: '202' }, 0.001)],
];

const results = new Map<string, number[]>(stages.map(([name]) => [name, []]));
for (const [, fn] of stages) for (let i = 0; i < 2000; i++) fn(i); // warm up
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of stages) {
    const per = Math.ceil(n / rounds);
    // CPU time, not wall time: a round preempted by the other work on the machine does not count it.
    const t0 = process.cpuUsage();
    for (let i = 0; i < per; i++) fn(i);
    const used = process.cpuUsage(t0);
    results.get(name)!.push((used.user + used.system) / per);
  }
}
console.log(`us per alert, median over ${rounds} rounds (min..max)`);
for (const [name, xs] of results) {
  const s = [...xs].sort((a, b) => a - b);
  const med = s[s.length >> 1]!;
  console.log(
    `${med.toFixed(2).padStart(8)}  (${s[0]!.toFixed(2)}..${s[s.length - 1]!.toFixed(2)})  ${name}`,
  );
}
