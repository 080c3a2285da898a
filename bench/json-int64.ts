// Exact int64 JSON parsing, the intake's way (src/intake/json.ts: a scanner marks long integer
// literals, the native parser does the rest) against JSON.parse with a reviver that reads each
// number's source text (Node 21 and later give revivers a `context.source`). Both sides run in
// the same process, interleaved, on the real Falco events of test/fixtures/falco; the bench
// checks that they agree before it times them.
//
//   npx tsx bench/json-int64.ts [rounds=7]
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseJsonExact } from '../src/intake/json.js';

const rounds = Number(process.argv[2] ?? 7);
const dir = join(import.meta.dirname, '..', 'test', 'fixtures', 'falco');
const events = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => readFileSync(join(dir, f), 'utf8'));

const INTEGER = /^-?(0|[1-9]\d*)$/;
type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
const reviver: Reviver = (_key, value, context) =>
  typeof value === 'number' &&
  !Number.isSafeInteger(value) &&
  context?.source !== undefined &&
  INTEGER.test(context.source)
    ? BigInt(context.source)
    : value;
const parseWithSource = (text: string): unknown => JSON.parse(text, reviver as never);

const sourceAvailable = (() => {
  let seen = false;
  JSON.parse('1', ((_k: string, v: unknown, c?: { source?: string }) => {
    seen = c?.source === '1';
    return v;
  }) as never);
  return seen;
})();

console.log(
  `node ${process.version}; reviver source text: ${sourceAvailable ? 'available' : 'not available'}`,
);
if (!sourceAvailable) process.exit(0);

for (const e of events)
  if (!isDeepStrictEqual(parseJsonExact(e), parseWithSource(e))) throw new Error('the two parsers disagree');

function rate(parse: (t: string) => unknown, ms = 300): number {
  let n = 0;
  const start = performance.now();
  let sink = 0;
  while (performance.now() - start < ms)
    for (const e of events) {
      if (parse(e) !== undefined) sink++;
      n++;
    }
  if (sink !== n) throw new Error('a parse returned nothing');
  return (n * 1000) / (performance.now() - start);
}

rate(parseJsonExact);
rate(parseWithSource);
const ours: number[] = [];
const theirs: number[] = [];
for (let r = 0; r < rounds; r++) {
  ours.push(rate(parseJsonExact));
  theirs.push(rate(parseWithSource));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bare = rate((t) => JSON.parse(t));
console.log(`events: ${events.length} real Falco events, ${rounds} interleaved rounds, median parses/s`);
console.log(`  JSON.parse, not exact:        ${Math.round(bare)}`);
console.log(`  scanner + JSON.parse (ours):  ${Math.round(median(ours))}`);
console.log(`  JSON.parse + source reviver:  ${Math.round(median(theirs))}`);
console.log(`  reviver / ours: ${(median(theirs) / median(ours)).toFixed(2)}`);
