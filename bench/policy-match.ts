// Policy matching against attacker-written values: time per pattern and per alert for
// pathological patterns against 64 KiB values (goal: under 10 ms per alert), with picomatch (what
// the intake used before, ADR 0011) on the same inputs in the same run. picomatch runs in a worker
// thread with a time budget, because its regexes backtrack for minutes on these inputs.
//
//   npx tsx bench/policy-match.ts [picomatchBudgetSeconds=10]
import { Worker } from 'node:worker_threads';
import { ResponsePolicySpec } from '../src/api/responsepolicy.js';
import type { Alert } from '../src/intake/falco.js';
import { policyMatches } from '../src/intake/policy.js';
import { MATCH_CAP, matches } from '../src/intake/wildcard.js';
import { percentile } from './stats.js';

const budgetMs = Number(process.argv[2] ?? 10) * 1000;
const KIB64 = MATCH_CAP;
const fill = (unit: string, length = KIB64) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length);

const CASES: Array<{ name: string; pattern: string; value: string }> = [
  { name: 'reverse shell, near misses', pattern: '*nc*-e*/bin/*sh*', value: fill('nc -e /bin/') },
  { name: 'reverse shell, no slash', pattern: '*nc*-e*/bin/*sh*', value: fill('nc -e ') },
  { name: 'many stars, no b', pattern: `${'*a'.repeat(8)}*b`, value: fill('a') },
  { name: 'long literal, no b', pattern: `*${'a'.repeat(64)}b*`, value: fill('a') },
  { name: 'long ? run, no b', pattern: `*${'?'.repeat(64)}b*`, value: fill('a') },
  { name: '1021-char ? segment', pattern: `*${'a?'.repeat(510)}b*`, value: fill('a') },
  { name: 'curl at the very end', pattern: '*curl*', value: fill('wget http://x/ ', KIB64 - 4) + 'curl' },
  { name: 'unicode', pattern: '*😀?😀*x', value: fill('😀é') },
];

function time(fn: () => boolean, minMs = 200, minRuns = 20): { ms: number[]; result: boolean } {
  const ms: number[] = [];
  let result = false;
  const started = performance.now();
  while (ms.length < minRuns || performance.now() - started < minMs) {
    const t = performance.now();
    result = fn();
    ms.push(performance.now() - t);
  }
  return { ms, result };
}

/** One picomatch run in a worker; undefined when it did not finish within the budget. */
function picomatchOnce(pattern: string, value: string): Promise<{ ms: number; result: boolean } | undefined> {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const picomatch = require('picomatch');
     const m = picomatch(workerData.pattern, { dot: true });
     const t = performance.now();
     const result = m(workerData.value);
     parentPort.postMessage({ ms: performance.now() - t, result });`,
    { eval: true, workerData: { pattern, value } },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      resolve(undefined);
    }, budgetMs);
    worker.once('message', (m: { ms: number; result: boolean }) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const fmt = (ms: number) => (ms < 0.1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`);

console.log(
  `value length ${KIB64} UTF-16 code units (64 KiB of ASCII); picomatch budget ${budgetMs / 1000} s`,
);
console.log(
  `${'case'.padEnd(28)} ${'pattern'.padEnd(24)} ${'ours p50'.padStart(10)} ${'ours p99'.padStart(10)}  ${'picomatch'.padStart(12)}`,
);
for (const c of CASES) {
  const ours = time(() => matches(c.pattern, c.value));
  const pico = await picomatchOnce(c.pattern, c.value);
  // picomatch's answer is shown when it differs from ours: a path glob's `*` stops at `/`.
  const picoText = pico
    ? `${fmt(pico.ms)}${pico.result === ours.result ? '' : ` (says ${pico.result})`}`
    : `> ${budgetMs / 1000} s`;
  const shown = c.pattern.length > 22 ? `${c.pattern.slice(0, 21)}…` : c.pattern;
  console.log(
    `${c.name.padEnd(28)} ${shown.padEnd(24)} ${fmt(percentile(ours.ms, 50)).padStart(10)} ${fmt(percentile(ours.ms, 99)).padStart(10)}  ${picoText.padStart(12)}  match=${ours.result}`,
  );
}

// Per alert: a policy with every pattern above on two 64 KiB output fields (each field must
// match one of its patterns, so none short-circuits to true before trying them all).
const patterns = CASES.map((c) => c.pattern);
const spec = ResponsePolicySpec.parse({
  match: { outputFields: { 'proc.cmdline': patterns, 'fd.name': patterns } },
});
const alert: Alert = {
  rule: 'Terminal shell in container',
  priority: 'Notice',
  time: '2026-01-01T00:00:00Z',
  timeNs: 0n,
  source: 'syscall',
  tags: [],
  fields: { 'proc.cmdline': fill('nc -e /bin/'), 'fd.name': fill('a') },
  target: { namespace: 'shop', pod: 'web-0' },
};
const perAlert = time(() => policyMatches(spec, alert), 1000);
console.log(
  `per alert (${patterns.length} patterns × 2 fields of 64 KiB): p50 ${fmt(percentile(perAlert.ms, 50))}, p99 ${fmt(percentile(perAlert.ms, 99))}, max ${fmt(Math.max(...perAlert.ms))} (goal < 10 ms), matched=${perAlert.result}`,
);
// The issue's own measurement, for comparison at the sizes it named.
for (const kib of [4, 16]) {
  const value = fill('nc -e ', kib * 1024);
  const ours = time(() => matches('*nc*-e*/bin/*sh*', value));
  const pico = await picomatchOnce('*nc*-e*/bin/*sh*', value);
  console.log(
    `*nc*-e*/bin/*sh* against ${kib} KiB: ours p50 ${fmt(percentile(ours.ms, 50))}, picomatch ${pico ? fmt(pico.ms) : `> ${budgetMs / 1000} s`}`,
  );
}
