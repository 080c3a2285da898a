// Exact int64 JSON parsing for the intake: src/intake/json.ts's scanner + native JSON.parse
// against Node 22+'s JSON.parse reviver with source text (context.source), on a real Falco
// event (evt.time is an int64 of nanoseconds). Run: npx tsx bench/json-exact.ts [iterations=200000]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseJsonExact } from '../src/intake/json.js';

const iterations = Number(process.argv[2] ?? 200_000);
const event = readFileSync(
  join(import.meta.dirname, '..', 'test', 'fixtures', 'falco', 'syscall-terminal-shell.json'),
  'utf8',
);

type SourceReviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;
const keepLong: SourceReviver = (_key, value, context) =>
  typeof value === 'number' &&
  !Number.isSafeInteger(value) &&
  context?.source &&
  /^-?\d+$/.test(context.source)
    ? BigInt(context.source)
    : value;
const viaReviver = (text: string) => JSON.parse(text, keepLong as Parameters<typeof JSON.parse>[1]);

const probe = viaReviver('{"t":1763990531153390386}') as { t: unknown };
if (typeof probe.t !== 'bigint')
  throw new Error(`this Node (${process.version}) gives revivers no source text`);
const expected = JSON.stringify(parseJsonExact(event), (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
const got = JSON.stringify(viaReviver(event), (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));
if (expected !== got) throw new Error('the two parsers disagree on the fixture');

function rate(name: string, parse: (text: string) => unknown): number {
  for (let i = 0; i < 20_000; i++) parse(event); // warm up
  const t = performance.now();
  for (let i = 0; i < iterations; i++) parse(event);
  const perSecond = (iterations / (performance.now() - t)) * 1000;
  console.log(`${name}: ${perSecond.toFixed(0)} events/s`);
  return perSecond;
}

console.log(`Node ${process.version}, ${event.length} bytes per event, ${iterations} iterations`);
const plain = rate('JSON.parse (rounds evt.time, for reference)', JSON.parse);
const scanner = rate('parseJsonExact (scanner + JSON.parse)', parseJsonExact);
const reviver = rate('JSON.parse with a source-text reviver', viaReviver);
console.log(`scanner ${(scanner / plain).toFixed(2)}x plain, reviver ${(reviver / plain).toFixed(2)}x plain`);
