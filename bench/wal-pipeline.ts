// The write-ahead log alone under a closed loop of clients (each appends, waits until durable,
// appends again), with 1, 2 and 3 durable writes in flight (ADR 0019), and 3 without the zeros
// written ahead of the records (records extend the file, ADR 0029), interleaved in rounds. Every
// client appends again at once, so each batch holds them all: this isolates the disk, where
// bench/intake.ts has requests arriving spread out.
//   npx tsx bench/wal-pipeline.ts [clients=32] [seconds=3] [rounds=3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteAheadLog } from '../src/intake/wal.js';
import { silentLogger } from '../src/observability/logger.js';

const clients = Number(process.argv[2] ?? 32);
const seconds = Number(process.argv[3] ?? 3);
const rounds = Number(process.argv[4] ?? 3);
const settings = [
  { syncsInFlight: 1 },
  { syncsInFlight: 2 },
  { syncsInFlight: 3 },
  { syncsInFlight: 3, preallocateBytes: 0 },
];
const record = { case: 'x'.repeat(60), alert: { output: 'o'.repeat(500) } };
const rates = settings.map(() => [] as number[]);
/** CPU of the process (every thread, user and system) per append, µs. */
const cpus = settings.map(() => [] as number[]);
for (let r = 0; r < rounds; r++) {
  for (const [k, s] of settings.entries()) {
    const dir = mkdtempSync(join(tmpdir(), 'amber-walbench-'));
    const { wal } = await WriteAheadLog.open({
      baseDir: dir,
      name: 'b',
      maxBytes: 2 ** 31,
      logger: silentLogger,
      ...s,
    });
    const deadline = Date.now() + seconds * 1000;
    const cpu = process.cpuUsage();
    let n = 0;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (Date.now() < deadline) {
          const { token, durable } = wal.append(record);
          await durable;
          wal.done([token]);
          n++;
        }
      }),
    );
    const used = process.cpuUsage(cpu);
    cpus[k]!.push((used.user + used.system) / n);
    await wal.close();
    rmSync(dir, { recursive: true, force: true });
    rates[k]!.push(Math.round(n / seconds));
  }
}
for (const [k, s] of settings.entries()) {
  const xs = [...rates[k]!].sort((a, b) => a - b);
  const cs = [...cpus[k]!].sort((a, b) => a - b);
  console.log(
    `${JSON.stringify(s)}: median ${xs[xs.length >> 1]} appends/s [${rates[k]!.join(' ')}], CPU per append median ${cs[cs.length >> 1]!.toFixed(1)} µs [${cpus[k]!.map((c) => c.toFixed(1)).join(' ')}]`,
  );
}
