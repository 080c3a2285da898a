import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeFrames, encodeFrame, FRAME_HEADER } from '../../../src/intake/walframe.js';
import {
  LogFullError,
  newRunId,
  writeDurably,
  WriteAheadLog,
  type WalOptions,
  type WriteBatch,
} from '../../../src/intake/wal.js';

/** Real files in a temporary directory: the log's file handling is what is under test. */
const opened: WriteAheadLog[] = [];
afterEach(async () => {
  for (const w of opened.splice(0)) await w.close();
});

function capture() {
  const lines: Array<{ msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

async function openLog(baseDir: string, over: Partial<WalOptions> = {}) {
  const { logger, lines } = capture();
  const res = await WriteAheadLog.open({ baseDir, name: 'amber-0', maxBytes: 1024 * 1024, logger, ...over });
  opened.push(res.wal);
  return { ...res, lines };
}

const segments = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.wal'));
const base = () => mkdtempSync(join(tmpdir(), 'amber-wal-'));

describe('WriteAheadLog', () => {
  it('gives back, after a crash, every record whose append resolved, in order', async () => {
    const dir = base();
    const { wal } = await openLog(dir);
    const appended = Array.from({ length: 50 }, (_, i) => wal.append({ n: i }));
    await Promise.all(appended.map((a) => a.durable));
    // No close(): the process is gone.
    const { recovered, wal: second } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual(Array.from({ length: 50 }, (_, i) => ({ n: i })));
    expect(recovered.map((r) => r.token.seq)).toEqual(appended.map((a) => a.token.seq));
    expect(new Set(recovered.map((r) => r.token.log))).toEqual(new Set([wal.id]));
    expect(second.id > wal.id).toBe(true); // a new run: its sequence numbers are its own
  });

  it('commits a burst with far fewer fsyncs than appends (group commit)', async () => {
    const dir = base();
    const { wal } = await openLog(dir);
    const first = wal.append({ n: 0 });
    const rest = Array.from({ length: 999 }, (_, i) => wal.append({ n: i + 1 }));
    await Promise.all([first, ...rest].map((a) => a.durable));
    expect(wal.fsyncs).toBeGreaterThan(0);
    expect(wal.fsyncs).toBeLessThanOrEqual(2);
    const { recovered } = await openLog(dir);
    expect(recovered).toHaveLength(1000);
  });

  it('answers records in the order appended while several syncs run, across segments, and keeps all', async () => {
    const dir = base();
    // Small segments: the stream crosses several, so handles change while syncs may be running.
    const { wal } = await openLog(dir, { segmentBytes: 2048 });
    const answered: number[] = [];
    const all: Array<Promise<void>> = [];
    for (let wave = 0; wave < 20; wave++) {
      for (let i = 0; i < 10; i++) {
        const n = wave * 10 + i;
        const { durable } = wal.append({ n, pad: 'p'.repeat(20) });
        all.push(durable.then(() => void answered.push(n)));
      }
      // The next wave arrives while the previous one is being written or synced.
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(answered).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(wal.fsyncs).toBeGreaterThan(1);
    await wal.close();
    const { recovered } = await openLog(dir);
    expect(recovered.map((r) => (r.body as { n: number }).n)).toEqual(
      Array.from({ length: 200 }, (_, n) => n),
    );
  });

  it('answers the appends of one turn with one promise, and refuses them all when their write fails', async () => {
    const dir = base();
    const { wal, lines } = await openLog(dir);
    // The log's directory gone before the first write: opening the segment fails.
    rmSync(join(dir, 'amber-0'), { recursive: true, force: true });
    const batch = Array.from({ length: 5 }, (_, i) => wal.append({ n: i }));
    expect(new Set(batch.map((a) => a.durable)).size).toBe(1);
    for (const a of batch)
      await expect(a.durable).rejects.toMatchObject({ code: 'log-write-failed', statusCode: 503 });
    expect(lines.some((l) => l.msg === 'write-ahead log append failed' && l.records === 5)).toBe(true);
    // A later append is a batch of its own, and is refused too while the disk fails.
    const later = wal.append({ n: 5 });
    expect(later.durable).not.toBe(batch[0]!.durable);
    await expect(later.durable).rejects.toMatchObject({ code: 'log-write-failed' });
  });

  it('skips a torn last record with a log line and replays the ones before it (records extending the file)', async () => {
    const dir = base();
    const { wal } = await openLog(dir, { preallocateBytes: 0 });
    await Promise.all([1, 2, 3].map((n) => wal.append({ n }).durable));
    await wal.close();
    const own = join(dir, 'amber-0');
    const file = join(own, segments(own)[0]!);
    truncateSync(file, statSync(file).size - 3);
    const { recovered, lines } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual([{ n: 1 }, { n: 2 }]);
    const torn = lines.find((l) => l.msg.startsWith('torn record'));
    expect(torn).toMatchObject({ reason: 'short-record', segment: file });
  });

  it('skips a torn last record in a zero-filled segment: the bytes never written are zeros', async () => {
    const dir = base();
    const { wal } = await openLog(dir);
    await Promise.all([1, 2, 3].map((n) => wal.append({ n }).durable));
    await wal.close();
    const own = join(dir, 'amber-0');
    const file = join(own, segments(own)[0]!);
    const bytes = readFileSync(file);
    const end = decodeFrames(bytes).validBytes;
    expect(bytes.length).toBeGreaterThan(end); // zeros ahead of the records
    expect(bytes.subarray(end).every((b) => b === 0)).toBe(true);
    for (const unwritten of [3, 20]) {
      // The process died before the last bytes of the last record reached the file.
      const torn = Buffer.from(bytes);
      torn.fill(0, end - unwritten, end);
      writeFileSync(file, torn);
      const again = await openLog(dir);
      expect(again.recovered.map((r) => r.body)).toEqual([{ n: 1 }, { n: 2 }]);
      expect(again.lines.find((l) => l.msg.startsWith('torn record'))).toMatchObject({
        reason: 'short-record',
        segment: file,
      });
      await again.wal.close();
    }
  });

  it('skips a record with a valid checksum but no sequence (never replays it as something else)', async () => {
    const dir = base();
    const own = join(dir, 'amber-0');
    mkdirSync(own, { recursive: true });
    writeFileSync(
      join(own, `${newRunId(1)}.0000000000000001.wal`),
      Buffer.concat([
        encodeFrame(Buffer.from('{"body":{}}')),
        encodeFrame(Buffer.from('{"seq":2,"body":{"n":2}}')),
      ]),
    );
    const { recovered, lines } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual([{ n: 2 }]);
    expect(lines.some((l) => l.msg.includes('no sequence'))).toBe(true);
  });

  it('refuses past its size with a stable code and changes nothing', async () => {
    const dir = base();
    const bytes: number[] = [];
    const { wal } = await openLog(dir, { maxBytes: 300, onBytes: (b) => bytes.push(b) });
    const ok = wal.append({ pad: 'x'.repeat(200) });
    const before = wal.bytes;
    expect(() => wal.append({ pad: 'x'.repeat(200) })).toThrow(LogFullError);
    try {
      wal.append({ pad: 'y' });
    } catch (err) {
      throw new Error(`a small record should still fit: ${String(err)}`);
    }
    expect(() => wal.append({ pad: 'x'.repeat(200) })).toThrowError(
      expect.objectContaining({ code: 'log-full', statusCode: 503 }),
    );
    await ok.durable;
    expect(wal.bytes).toBeGreaterThan(before);
    expect(bytes.at(-1)).toBe(wal.bytes);
  });

  it('deletes a segment once its records are done, and frees the room', async () => {
    const dir = base();
    const { wal } = await openLog(dir, { segmentBytes: 200, maxBytes: 1000 });
    const own = join(dir, 'amber-0');
    const a = Array.from({ length: 12 }, (_, i) => wal.append({ n: i, pad: 'z'.repeat(40) }));
    await Promise.all(a.map((x) => x.durable));
    expect(() => wal.append({ pad: 'z'.repeat(400) })).toThrow(LogFullError);
    const before = segments(own).length;
    expect(before).toBeGreaterThan(2);
    wal.done(a.slice(0, 8).map((x) => x.token));
    await waitFor(() => segments(own).length < before);
    expect(wal.bytes).toBeLessThan(1000 - 400);
    const { recovered } = await openLog(dir, { name: 'amber-0' });
    // What is not done is still there after a crash.
    expect(recovered.map((r) => (r.body as { n: number }).n)).toEqual(expect.arrayContaining([8, 9, 10, 11]));
  });

  it('takes over the log of a replica whose lock went stale, and leaves a live one alone', async () => {
    const dir = base();
    const gone = await openLog(dir, { name: 'amber-1' });
    await Promise.all([1, 2].map((n) => gone.wal.append({ from: 'amber-1', n }).durable));
    const live = await openLog(dir, { name: 'amber-2' });
    await live.wal.append({ from: 'amber-2' }).durable;
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(join(dir, 'amber-1', 'lock'), old, old);

    const { recovered, lines, wal } = await openLog(dir, { name: 'amber-0', staleAfterMs: 60_000 });
    expect(recovered.map((r) => r.body)).toEqual([
      { from: 'amber-1', n: 1 },
      { from: 'amber-1', n: 2 },
    ]);
    expect(readdirSync(dir).sort()).toEqual(['amber-0', 'amber-2']);
    expect(lines.some((l) => l.msg.startsWith('taking over'))).toBe(true);
    // Once replayed, the adopted directory goes.
    wal.done(recovered.map((r) => r.token));
    await waitFor(() => readdirSync(join(dir, 'amber-0', 'adopted')).length === 0);
  });

  it('refuses a name that could escape its directory', async () => {
    await expect(openLog(base(), { name: '../x' })).rejects.toThrow(/DNS-1123/);
  });

  it('orders run ids by time', () => {
    expect(newRunId(1_000) < newRunId(2_000)).toBe(true);
    expect(newRunId(Date.parse('2059-01-01')) > newRunId(Date.parse('2026-01-01'))).toBe(true);
  });
});

async function waitFor(cond: () => boolean): Promise<void> {
  // Deletions run on the fs thread pool; poll on the event, not a fixed sleep.
  for (let i = 0; i < 500 && !cond(); i++) await sleep(5);
  expect(cond()).toBe(true);
}

describe('WriteAheadLog taking over a log while it runs', () => {
  it('adopts a sibling whose lock went stale after open, once, and replays nothing of a live one', async () => {
    const dir = base();
    const { wal } = await openLog(dir, { name: 'amber-0', staleAfterMs: 60_000 });
    expect(wal.adoptStaleLogs()).toEqual([]);
    const gone = await openLog(dir, { name: 'amber-1' });
    await Promise.all([1, 2, 3].map((n) => gone.wal.append({ n }).durable));
    await gone.wal.close();
    expect(wal.adoptStaleLogs()).toEqual([]); // its lock is fresh
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(join(dir, 'amber-1', 'lock'), old, old);
    const before = wal.bytes;
    const adopted = wal.adoptStaleLogs();
    expect(adopted.map((r) => r.body)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(wal.bytes).toBeGreaterThan(before);
    expect(wal.adoptStaleLogs()).toEqual([]); // taken once
    wal.done(adopted.map((r) => r.token));
    await waitFor(() => readdirSync(join(dir, 'amber-0', 'adopted')).length === 0);
    expect(wal.bytes).toBe(before);
  });
});

/** A real durable write that waits for `release` first: lets a later batch finish before it. */
function held() {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  return { gate, release };
}
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe('WriteAheadLog durable writes in flight (ADR 0029)', () => {
  it('keeps records in append order in the file and answers in order when a later batch finishes first', async () => {
    const dir = base();
    const first = held();
    let calls = 0;
    let laterDone = false;
    const writeBatch: WriteBatch = async (fd, frames, position) => {
      if (calls++ === 0) {
        await first.gate;
        return writeDurably(fd, frames, position);
      }
      await writeDurably(fd, frames, position);
      laterDone = true;
    };
    const { wal } = await openLog(dir, { writeBatch });
    const answered: string[] = [];
    const a = wal.append({ n: 'a' });
    void a.durable.then(() => answered.push('a'));
    await nextTurn();
    const b = wal.append({ n: 'b' });
    void b.durable.then(() => answered.push('b'));
    // b is durable before a's write even starts: b must still wait for a.
    await waitForAsync(() => laterDone);
    for (let i = 0; i < 5; i++) await nextTurn();
    expect(answered).toEqual([]);
    first.release();
    await Promise.all([a.durable, b.durable]);
    expect(answered).toEqual(['a', 'b']);
    expect(wal.fsyncs).toBe(2);
    const { recovered } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual([{ n: 'a' }, { n: 'b' }]);
  });

  it('refuses every later batch of a segment whose write failed part way, though their bytes are on disk, and writes on in a new segment', async () => {
    const dir = base();
    const first = held();
    let calls = 0;
    let laterDone = false;
    // The first batch dies half way through its first record (a full disk mid-write).
    const writeBatch: WriteBatch = async (fd, frames, position) => {
      if (calls++ > 0) {
        await writeDurably(fd, frames, position);
        laterDone = true;
        return;
      }
      await first.gate;
      await writeDurably(fd, [frames[0]!.subarray(0, frames[0]!.length >> 1)], position);
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    };
    const { wal, lines } = await openLog(dir, { writeBatch });
    const a = [wal.append({ n: 1 }), wal.append({ n: 2 })];
    await nextTurn();
    const b = wal.append({ n: 3 }); // durable on disk, but behind the torn batch
    await waitForAsync(() => laterDone);
    first.release();
    for (const x of a) await expect(x.durable).rejects.toMatchObject({ code: 'log-write-failed' });
    await expect(b.durable).rejects.toMatchObject({ code: 'log-write-failed', message: /earlier write/ });
    expect(lines.filter((l) => l.msg === 'write-ahead log append failed')).toHaveLength(1);
    // The next append goes to a new segment, not behind the damage.
    const c = wal.append({ n: 4 });
    await c.durable;
    const own = join(dir, 'amber-0');
    expect(segments(own)).toHaveLength(2);
    // After a crash: exactly the record answered 2xx is replayed; the damage is logged.
    const again = await openLog(dir);
    expect(again.recovered.map((r) => r.body)).toEqual([{ n: 4 }]);
    expect(again.lines.find((l) => l.msg.startsWith('torn record'))).toMatchObject({
      reason: 'bad-checksum',
    });
  });

  it('refuses a batch still queued for a segment that failed, without writing it', async () => {
    const dir = base();
    const first = held();
    const writes: number[] = [];
    const writeBatch: WriteBatch = async (fd, frames, position) => {
      writes.push(frames.length);
      if (writes.length === 1) {
        await first.gate;
        throw new Error('EIO: i/o error');
      }
      return writeDurably(fd, frames, position);
    };
    // One write in flight at a time: the second batch waits in the queue.
    const { wal } = await openLog(dir, { writeBatch, syncsInFlight: 1 });
    const a = wal.append({ n: 1 });
    await nextTurn();
    const b = [wal.append({ n: 2 }), wal.append({ n: 3 })];
    first.release();
    await expect(a.durable).rejects.toMatchObject({ code: 'log-write-failed' });
    for (const x of b) await expect(x.durable).rejects.toMatchObject({ message: /earlier write/ });
    expect(writes).toEqual([1]);
    await wal.append({ n: 4 }).durable;
    const { recovered } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual([{ n: 4 }]);
  });

  it('rejects a write the file refuses (the default writer)', async () => {
    const dir = base();
    const path = join(dir, 'f');
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    await expect(writeDurably(fd, [Buffer.from('x')], 0)).rejects.toMatchObject({ code: 'EBADF' });
    closeSync(fd);
  });

  it('keeps an alert whose text is made of forged frames as one record, with no byte a frame header needs', async () => {
    const dir = base();
    const forgedFrames = Buffer.concat([
      encodeFrame(Buffer.from('{"seq":1,"body":{"forged":true}}')),
      encodeFrame(Buffer.from('{"seq":999,"body":{"forged":true}}')),
    ]);
    const forged = forgedFrames.toString('latin1');
    const { wal } = await openLog(dir);
    await wal.append({ n: 1 }).durable;
    await wal.append({ output: forged }).durable;
    await wal.close();
    const own = join(dir, 'amber-0');
    const bytes = readFileSync(join(own, segments(own)[0]!));
    const decoded = decodeFrames(bytes);
    expect(decoded.payloads).toHaveLength(2);
    // A header's length is below 2^24, so its last byte is 0; JSON never writes a NUL byte, so
    // no record can carry something that reads as a header, whatever the alert says.
    for (const p of decoded.payloads) expect(p.includes(0)).toBe(false);
    const { recovered } = await openLog(dir);
    expect(recovered.map((r) => r.body)).toEqual([{ n: 1 }, { output: forged }]);
    // Torn at any byte of the second record: only the first is replayed, never a forged one.
    const secondStart = FRAME_HEADER + decoded.payloads[0]!.length;
    for (let cut = secondStart + 1; cut < decoded.validBytes; cut++) {
      expect(decodeFrames(bytes.subarray(0, cut)).payloads.map(String)).toEqual([
        String(decoded.payloads[0]),
      ]);
      const unwritten = Buffer.from(bytes);
      unwritten.fill(0, cut, decoded.validBytes);
      expect(decodeFrames(unwritten).payloads.map(String)).toEqual([String(decoded.payloads[0])]);
    }
  });
});

async function waitForAsync(cond: () => boolean): Promise<void> {
  // The writes run on the fs thread pool; poll on the event, not a fixed sleep.
  for (let i = 0; i < 2500 && !cond(); i++) await sleep(2);
  expect(cond()).toBe(true);
}
