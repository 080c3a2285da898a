// Where the time of a `node --cpu-prof` profile went, per accepted alert: self time of the
// hottest functions, and inclusive time of the intake's stages (each counted once per stack, at
// its outermost frame), in microseconds of the main thread per alert.
//
//   AMBER_BENCH_PROFILE=/tmp/prof npx tsx bench/intake.ts 10 32 1
//   npx tsx bench/cpuprofile-summary.ts /tmp/prof/<n>-<variant>-<accepted>.cpuprofile [top=40] [accepted]
// (bench/intake.ts names each profile with the alerts accepted during it; a profile of
// `node --cpu-prof` needs them given.)
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Stages, by the first test that matches a frame (function name, then file). */
const STAGES: Array<[string, (f: CallFrame) => boolean]> = [
  ['bearer token check (bearerMatches)', (f) => f.functionName === 'bearerMatches'],
  ['body: UTF-8, exact-int64 JSON parse (parseJsonExact)', (f) => f.functionName === 'parseJsonExact'],
  [
    'validation (wellFormedEvent, the schema)',
    (f) => /wellFormedEvent|refuseProtoKeys|safeParse/.test(f.functionName) && /falco\.ts/.test(f.url),
  ],
  ['parseFalcoBody (decode + parse + validate)', (f) => f.functionName === 'parseFalcoBody'],
  ['toAlert (target, names)', (f) => f.functionName === 'toAlert'],
  ['WAL append (record JSON, frame, CRC)', (f) => f.functionName === 'append' && /wal\.ts/.test(f.url)],
  [
    'WAL batch write + sync + answers',
    (f) => /writeNext|settle|openSegment/.test(f.functionName) && /wal\.ts/.test(f.url),
  ],
  ['event digest (no uuid)', (f) => f.functionName === 'eventDigest'],
  ['loggedAlert (record of the alert)', (f) => f.functionName === 'loggedAlert'],
  ['policy matching (decideMatch)', (f) => f.functionName === 'decideMatch'],
  ['accept (policies, dedup, limits, log)', (f) => f.functionName === 'accept' && /engine\.ts/.test(f.url)],
  [
    'engine writes to the API server (flush)',
    (f) => /flush|writeEach|tryCreate/.test(f.functionName) && /engine\.ts/.test(f.url),
  ],
  ['metrics (prom-client)', (f) => /prom-client/.test(f.url)],
  ['logging (pino)', (f) => /\/pino\//.test(f.url)],
  ['kube client (API requests)', (f) => /@kubernetes|undici|node-fetch/.test(f.url)],
  ['fastify hooks and routing', (f) => /\/fastify\/|find-my-way|avvio|light-my-request/.test(f.url)],
];

function main(): void {
  const [file, topArg, acceptedArg] = process.argv.slice(2);
  const accepted = Number(acceptedArg ?? /-(\d+)\.cpuprofile$/.exec(file ?? '')?.[1]);
  if (!file || !accepted)
    throw new Error('usage: cpuprofile-summary.ts <file.cpuprofile> [top] [accepted alerts]');
  const top = Number(topArg ?? 40);
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idleUs = [...selfUs]
    .filter(([id]) => /\(idle\)/.test(byId.get(id)!.callFrame.functionName))
    .reduce((a, [, v]) => a + v, 0);
  const perAlert = (us: number) => (us / accepted).toFixed(2);

  // Self time by function.
  const byFn = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
  }
  console.log(
    `profile ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s, sampled ${(totalUs / 1e6).toFixed(1)} s, idle ${(idleUs / 1e6).toFixed(1)} s, ${accepted} alerts: ${perAlert(totalUs - idleUs)} µs busy per alert`,
  );
  console.log(`\ntop ${top} functions by self time (µs per alert):`);
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`  ${perAlert(us).padStart(7)}  ${k}`);

  // Self time by file.
  const byFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const key = packageOf(byId.get(id)!.callFrame);
    byFile.set(key, (byFile.get(key) ?? 0) + us);
  }
  console.log('\nself time by package or file (µs per alert):');
  for (const [k, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(`  ${perAlert(us).padStart(7)}  ${k}`);

  // Inclusive time per stage, counted at the outermost matching frame of each sample's stack.
  const stageUs = STAGES.map(() => 0);
  const stackCache = new Map<number, Set<number>>();
  const stagesOf = (id: number): Set<number> => {
    const cached = stackCache.get(id);
    if (cached) return cached;
    const up = parent.get(id);
    const s = new Set(up === undefined ? [] : stagesOf(up));
    const f = byId.get(id)!.callFrame;
    const k = STAGES.findIndex(([, test]) => test(f));
    if (k >= 0) s.add(k);
    stackCache.set(id, s);
    return s;
  };
  for (const [id, us] of selfUs) for (const k of stagesOf(id)) stageUs[k]! += us;
  console.log('\ninclusive time by stage (µs per alert; a stage includes the ones it calls):');
  STAGES.forEach(([name], k) => console.log(`  ${perAlert(stageUs[k]!).padStart(7)}  ${name}`));
}

function shortUrl(url: string): string {
  return url
    .replace(/^file:\/\//, '')
    .replace(/^.*node_modules\//, '')
    .replace(/^.*\/(src|bench|test)\//, '$1/');
}

function packageOf(f: CallFrame): string {
  if (!f.url) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url);
  if (m) return m[1]!;
  if (f.url.startsWith('node:')) return f.url;
  return shortUrl(f.url);
}

main();
