import { randomBytes } from 'node:crypto';
import {
  close as closeFd,
  constants,
  existsSync,
  fsync,
  mkdirSync,
  open as openFd,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writev,
} from 'node:fs';
import { unlink, utimes, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.js';
import { errorMessage } from '../runtime/errors.js';
import { IntakeError } from './errors.js';
import { decodeFrames, encodeTextFrame } from './walframe.js';

/**
 * The intake's write-ahead log (ADR 0014). Every alert the webhook answers 2xx for is appended
 * here and fsynced before the answer; the log is replayed on start; a segment is deleted once
 * every record in it is on the API server (the engine calls done()).
 *
 * Layout: <base>/<name>/ holds one replica's log (name: the pod's name), with
 *   lock                touched every few seconds while a process owns the directory
 *   <run>.<seq>.wal     segments: <run> is a new id for each process (a time, so ids sort by
 *                       age), the key of its high-water mark on each case; <seq> the segment's
 *                       first sequence number. A new run never reuses a sequence number.
 *   adopted/            logs of replicas gone for good, taken over whole (same layout)
 *
 * Group commit: appends made while a write is in flight go out together in the next one, so one
 * sync covers every alert that arrived during the previous one. A batch is one positional
 * `pwritev` on a descriptor opened O_DSYNC: the write returns once its bytes are as durable as
 * after an fdatasync, in one thread-pool job (ADR 0029; it was a `writev` and an `fdatasync`,
 * two jobs and two wake-ups of the event loop per batch).
 */

export interface WalOptions {
  /** The volume's directory; each replica keeps its own subdirectory. */
  baseDir: string;
  /** This replica's subdirectory (the pod's name: stable across container restarts). */
  name: string;
  /** Past this many bytes on disk, append() refuses (HTTP 503 log-full). */
  maxBytes: number;
  /** A segment is closed and a new one begun past this size. */
  segmentBytes?: number;
  /** A sibling directory whose lock was not touched for this long belongs to a replica gone for good. */
  staleAfterMs?: number;
  logger: Logger;
  /** Told the bytes on disk whenever they change (a gauge). */
  onBytes?: (bytes: number) => void;
  /** Durable writes in flight at once (MAX_SYNCS_IN_FLIGHT); 1 is the plain group commit. */
  syncsInFlight?: number;
  /**
   * Zeros written ahead of the records, this many bytes at a time (default: an eighth of a
   * segment, 4 KiB to 1 MiB; 0: records extend the file). A record written over them changes
   * no file size, so its sync has no metadata to commit to the file system's journal (ADR 0029).
   */
  preallocateBytes?: number;
  /**
   * Makes one batch durable (default: one pwritev on the O_DSYNC descriptor). Tests wrap the real
   * write to put a delay or a failure into one batch.
   */
  writeBatch?: WriteBatch;
  /**
   * Given the records of a stale replica's log taken over while this one runs (to replay them).
   * Without it, other replicas' logs are taken over at open() only.
   */
  onAdopted?: (records: RecoveredRecord[]) => void;
}

export type WriteBatch = (fd: number, frames: Buffer[], position: number) => Promise<void>;

export interface RecoveredRecord {
  token: WalToken;
  body: unknown;
}

/** Names one appended record; the engine hands it back to done() once it is on the API server. */
export interface WalToken {
  readonly log: string;
  readonly seq: number;
}

interface Segment {
  path: string;
  log: LogDir;
  bytes: number;
  /** Records not yet on the API server. */
  outstanding: number;
  /** Frames appended but not yet written to the file. */
  unwritten: number;
  sealed: boolean;
  /**
   * A write to it failed: it may have left a hole or part of a record, and replay stops there, so
   * no later batch of this segment may be answered 2xx.
   */
  broken?: boolean;
}

interface LogDir {
  dir: string;
  segments: Set<Segment>;
  /** Another replica's log: its directory goes once its last segment does. */
  adopted: boolean;
}

interface Token extends WalToken {
  segment: Segment;
}

/**
 * Records appended for one segment since the last batch was taken: written together, answered
 * together. One promise per batch, however many records (and requests) wait on it.
 */
interface Pending {
  segment: Segment;
  /** Where the batch's first frame goes in the segment's file. */
  offset: number;
  frames: Buffer[];
  durable: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The log is at its size limit: the alert was not accepted (HTTP 503). */
export class LogFullError extends IntakeError {
  constructor(message: string) {
    super('log-full', 503, message);
    this.name = 'LogFullError';
  }
}

/** The append could not be made durable (a disk error): the alert was not accepted. */
export class LogWriteError extends IntakeError {
  constructor(message: string) {
    super('log-write-failed', 503, message);
    this.name = 'LogWriteError';
  }
}

/**
 * The open segment's descriptors, opened O_DSYNC, one for each write in flight, used in turn: a
 * write-back error is reported once per descriptor, so two writes syncing through a shared one
 * could let one take the error meant for the other's pages (ADR 0019).
 */
interface OpenSegment {
  segment: Segment;
  fds: number[];
  /** Writes the zeros ahead of the records, on a descriptor of its own. */
  zeroFd: number;
  /** The file holds durable zeros (or records) up to here: a write below it changes no size. */
  allocated: number;
  /** The zero fill running, if one is. */
  extending?: Promise<void>;
}

/**
 * Durable writes in flight at once. Under load the next batch is written while the previous one
 * is still syncing: the file system joins concurrent syncs into one journal commit, so an alert
 * waits for about one sync instead of the rest of the current one plus its own (ADR 0019). Each
 * batch has its own place in the file, so the order of the records does not depend on which
 * finishes first. Below the four threads of libuv's pool, so a write always finds one.
 */
const MAX_SYNCS_IN_FLIGHT = 3;

const SEGMENT_NAME = /^([a-z0-9]{1,32})\.(\d{16})\.wal$/;
const IDLE_ROTATE_BYTES = 64 * 1024;

export class WriteAheadLog {
  private readonly log: Logger;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly onBytes: (bytes: number) => void;
  private readonly opts: WalOptions;
  private readonly own: LogDir;
  private readonly runId: string;
  private readonly lockPath: string;
  private nextSeq = 1;
  private active: Segment | undefined;
  private totalBytes = 0;
  private queue: Pending[] = [];
  /** A batch's write is being started (they start one at a time, in order; many may run). */
  private writing = false;
  private pumpScheduled = false;
  /** Batches whose durable write has not settled yet. */
  private syncing = 0;
  /** Settles (never rejects) once the last batch written has been answered, and every one before it. */
  private lastSettled: Promise<void> = Promise.resolve();
  private idleWaiters: Array<() => void> = [];
  private batches = 0;
  private readonly syncsInFlight: number;
  private readonly writeBatch: WriteBatch;
  private readonly preallocate: number;
  private fh: OpenSegment | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private syncs = 0;

  private constructor(opts: WalOptions, own: LogDir) {
    this.log = opts.logger;
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = opts.segmentBytes ?? 8 * 1024 * 1024;
    this.onBytes = opts.onBytes ?? (() => {});
    this.opts = opts;
    this.own = own;
    this.lockPath = join(own.dir, 'lock');
    this.runId = newRunId();
    this.syncsInFlight = opts.syncsInFlight ?? MAX_SYNCS_IN_FLIGHT;
    this.writeBatch = opts.writeBatch ?? writeDurably;
    this.preallocate =
      opts.preallocateBytes ?? Math.ceil(clamp(this.segmentBytes / 8, 4096, 1024 * 1024) / 4096) * 4096;
  }

  /**
   * Opens this replica's log (creating it), takes over the logs of replicas whose lock went
   * stale, and returns every record not yet known to be on the API server, oldest first per log.
   */
  static async open(opts: WalOptions): Promise<{ wal: WriteAheadLog; recovered: RecoveredRecord[] }> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(opts.name))
      throw new Error(`the write-ahead log name "${opts.name}" must be a DNS-1123 name (the pod's name)`);
    const dir = join(opts.baseDir, opts.name);
    mkdirSync(join(dir, 'adopted'), { recursive: true });
    // A process restarted in the same pod takes its own directory back: the pod's name is unique
    // in the cluster, and the container before it has exited.
    await writeFile(join(dir, 'lock'), `${JSON.stringify({ pid: process.pid, since: new Date() })}\n`);
    adoptStale(opts, dir);

    const recovered: RecoveredRecord[] = [];
    const logs = readLogTree(dir, false, opts.logger, recovered);
    const wal = new WriteAheadLog(opts, logs[0]!);
    // Segments of the last run are never appended to again: a torn tail stays where it is.
    for (const l of logs) for (const s of l.segments) s.sealed = true;
    wal.totalBytes = logs.reduce((n, l) => n + [...l.segments].reduce((m, s) => m + s.bytes, 0), 0);
    wal.onBytes(wal.totalBytes);
    for (const l of logs) for (const s of [...l.segments]) wal.maybeDelete(s);
    const staleAfterMs = opts.staleAfterMs ?? 120_000;
    wal.heartbeat = setInterval(() => {
      const now = new Date();
      utimes(wal.lockPath, now, now).catch((err: unknown) =>
        wal.log.warn({ err: errorMessage(err) }, 'could not touch the write-ahead log lock'),
      );
      if (opts.onAdopted) {
        try {
          const adopted = wal.adoptStaleLogs();
          if (adopted.length > 0) opts.onAdopted(adopted);
        } catch (err) {
          wal.log.warn({ err: errorMessage(err) }, 'could not take over a stale write-ahead log');
        }
      }
    }, staleAfterMs / 4);
    wal.heartbeat.unref();
    opts.logger.info(
      { dir, run: wal.runId, records: recovered.length, logs: logs.length, bytes: wal.totalBytes },
      'write-ahead log opened',
    );
    return { wal, recovered };
  }

  /**
   * Takes over the logs of replicas whose lock went stale since open(), and returns their
   * records for replay (the heartbeat calls it when `onAdopted` is set).
   */
  adoptStaleLogs(): RecoveredRecord[] {
    const records: RecoveredRecord[] = [];
    for (const dir of adoptStale(this.opts, this.own.dir)) {
      for (const l of readLogTree(dir, true, this.log, records)) {
        for (const s of l.segments) this.addBytes(s.bytes);
        for (const s of [...l.segments]) this.maybeDelete(s);
        if (l.segments.size === 0) rmSync(l.dir, { recursive: true, force: true });
      }
    }
    return records;
  }

  /** This process's log id (the key of its high-water marks). */
  get id(): string {
    return this.runId;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /**
   * Batches made durable so far, each one O_DSYNC write (an fdatasync's worth; the zeros
   * written ahead are not counted): with group commit, far fewer than appends under load.
   */
  get fsyncs(): number {
    return this.syncs;
  }

  /**
   * Appends a record; `durable` settles once it is fsynced. Throws LogFullError, before anything
   * changed, when the log is at its size limit.
   */
  append(body: unknown): { token: WalToken; durable: Promise<void> } {
    if (this.closed) throw new LogWriteError('the write-ahead log is closed');
    const seq = this.nextSeq;
    const frame = encodeTextFrame(JSON.stringify({ seq, body }));
    if (this.totalBytes + frame.length > this.maxBytes) {
      throw new LogFullError(
        `the write-ahead log holds ${this.totalBytes} bytes not yet on the API server (limit ${this.maxBytes})`,
      );
    }
    this.nextSeq++;
    if (!this.active || this.active.sealed || this.active.bytes >= this.segmentBytes) {
      if (this.active) this.seal(this.active);
      this.active = {
        path: join(this.own.dir, `${this.runId}.${String(seq).padStart(16, '0')}.wal`),
        log: this.own,
        bytes: 0,
        outstanding: 0,
        unwritten: 0,
        sealed: false,
      };
      this.own.segments.add(this.active);
    }
    const segment = this.active;
    let batch = this.queue[this.queue.length - 1];
    if (batch?.segment !== segment) {
      batch = newBatch(segment, segment.bytes);
      this.queue.push(batch);
    }
    segment.bytes += frame.length;
    segment.outstanding++;
    segment.unwritten++;
    this.addBytes(frame.length);
    batch.frames.push(frame);
    this.pump();
    const token: Token = { log: this.runId, seq, segment };
    return { token, durable: batch.durable };
  }

  /** The records are on the API server: their segments may go. */
  done(tokens: readonly WalToken[]): void {
    for (const t of tokens) {
      const segment = (t as Token).segment;
      if (!segment) continue;
      segment.outstanding--;
      if (segment.outstanding === 0 && segment === this.active && segment.bytes >= IDLE_ROTATE_BYTES)
        this.seal(segment);
      this.maybeDelete(segment);
    }
  }

  /** Writes what is queued and stops; the files stay for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    while (this.queue.length > 0 || this.writing || this.syncing > 0 || this.pumpScheduled)
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.closeSegment();
  }

  /** Starts writing the next batch when nothing is being written and a sync slot is free. */
  private pump(): void {
    if (this.pumpScheduled || this.writing || this.queue.length === 0) return;
    if (this.syncing >= this.syncsInFlight) return;
    this.pumpScheduled = true;
    // Let the appends of this turn of the event loop join the batch.
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.writeNext();
    });
  }

  /**
   * Starts the durable write of the queue's first batch (the records of one segment) without
   * waiting for it; settle() answers the batch. Batches are answered in the order appended.
   */
  private async writeNext(): Promise<void> {
    if (this.writing || this.queue.length === 0 || this.syncing >= this.syncsInFlight) {
      this.wakeIdle();
      return;
    }
    this.writing = true;
    const batch = this.queue.shift()!;
    const segment = batch.segment;
    let written: Promise<void>;
    try {
      if (segment.broken) throw new Error('an earlier write to this segment failed');
      const open = this.fh?.segment === segment ? this.fh : await this.openSegment(segment);
      const end = batch.offset + batch.frames.reduce((n, f) => n + f.length, 0);
      if (this.preallocate > 0 && end > open.allocated) await this.allocate(open, end);
      written = this.writeBatch(open.fds[this.batches++ % open.fds.length]!, batch.frames, batch.offset);
      this.syncs++;
      // The next stretch of zeros is written while the records fill this one.
      if (this.preallocate > 0 && open.allocated - end < this.preallocate / 2)
        this.allocate(open, open.allocated + 1).catch(() => {});
    } catch (err) {
      written = Promise.reject(err);
    }
    written.catch(() => {});
    this.syncing++;
    this.writing = false;
    this.lastSettled = this.settle(batch, written, this.lastSettled);
    this.pump();
  }

  /** Answers a batch once its own write and every earlier batch's have settled. */
  private async settle(batch: Pending, written: Promise<void>, earlier: Promise<void>): Promise<void> {
    let error: unknown;
    try {
      await written;
    } catch (err) {
      error = err;
    }
    await earlier;
    try {
      if (error !== undefined) {
        this.log.error(
          { err: errorMessage(error), records: batch.frames.length },
          'write-ahead log append failed',
        );
      } else if (batch.segment.broken) {
        // Its bytes are on disk, but behind a batch that failed: replay would stop before them.
        error = new Error('an earlier write to this segment failed');
      }
      if (error === undefined) {
        batch.resolve();
      } else {
        batch.reject(new LogWriteError(`the write-ahead log could not be written: ${errorMessage(error)}`));
        // Later records go to a new segment, so they are not behind a hole or part of a record
        // (decoding stops at the first bad record of a segment).
        batch.segment.broken = true;
        this.seal(batch.segment);
      }
    } finally {
      batch.segment.unwritten -= batch.frames.length;
      this.maybeDelete(batch.segment);
      this.syncing--;
      this.pump();
      this.wakeIdle();
    }
  }

  private wakeIdle(): void {
    if (this.queue.length > 0 || this.writing || this.syncing > 0 || this.pumpScheduled) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async openSegment(segment: Segment): Promise<OpenSegment> {
    // The descriptors of the previous segment close only once no write is running on them.
    await this.lastSettled;
    await this.closeSegment();
    const fds: number[] = [];
    try {
      // O_EXCL: a segment is a new file (a new run id), never one written before.
      const { O_WRONLY, O_CREAT, O_EXCL, O_DSYNC } = constants;
      fds.push(await openAsync(segment.path, O_WRONLY | O_CREAT | O_EXCL | O_DSYNC, 0o600));
      // Opened before any write they will sync, so they report every error after it; the last
      // one writes the zeros.
      while (fds.length < this.syncsInFlight + 1) fds.push(await openAsync(segment.path, O_WRONLY | O_DSYNC));
      // The new file's name made durable once, before the first record in it is answered.
      await syncDir(segment.log.dir);
    } catch (err) {
      await Promise.all(fds.map((fd) => closeAsync(fd).catch(() => {})));
      throw err;
    }
    const zeroFd = fds.pop()!;
    this.fh = { segment, fds, zeroFd, allocated: 0 };
    return this.fh;
  }

  /**
   * Settles once the file holds zeros up to at least `atLeast` (a write of zeros past the
   * records, durable, one size change for many records). Records are written only below
   * `allocated`, so the zeros never land on one.
   */
  private allocate(open: OpenSegment, atLeast: number): Promise<void> {
    if (open.allocated >= atLeast) return Promise.resolve();
    if (!open.extending) {
      const from = open.allocated;
      const to = Math.ceil((Math.max(atLeast, from) + this.preallocate) / 4096) * 4096;
      open.extending = writeZeros(open.zeroFd, from, to)
        .then(() => {
          open.allocated = to;
        })
        .finally(() => {
          open.extending = undefined;
        });
    }
    return open.extending.then(() => this.allocate(open, atLeast));
  }

  private async closeSegment(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return;
    // A zero fill still running finishes first: its descriptor is closed below.
    await fh.extending?.catch(() => {});
    await Promise.all([...fh.fds, fh.zeroFd].map((fd) => closeAsync(fd)));
  }

  private seal(segment: Segment): void {
    segment.sealed = true;
    if (this.active === segment) this.active = undefined;
  }

  /** Deletes a sealed segment whose records are all on the API server and all written. */
  private maybeDelete(segment: Segment): void {
    if (!segment.sealed || segment.outstanding > 0 || segment.unwritten > 0) return;
    if (!segment.log.segments.delete(segment)) return;
    this.addBytes(-segment.bytes);
    const log = segment.log;
    const closing = this.fh?.segment === segment ? this.closeSegment() : undefined;
    void Promise.resolve(closing)
      .then(() => unlink(segment.path))
      .then(() => {
        if (log.adopted && log.segments.size === 0) {
          rmSync(log.dir, { recursive: true, force: true });
          this.log.info({ dir: log.dir }, 'adopted write-ahead log fully replayed, removed');
        }
      })
      .catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          this.log.warn({ err: errorMessage(err), segment: segment.path }, 'could not delete a segment');
      });
  }

  private addBytes(n: number): void {
    this.totalBytes += n;
    this.onBytes(this.totalBytes);
  }
}

const openAsync = promisify(openFd);
const closeAsync = promisify(closeFd);
const fsyncAsync = promisify(fsync);
const ZEROS = Buffer.alloc(1024 * 1024);

function clamp(x: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, x));
}

/** Zeros over [from, to) of the file, durable (the descriptor is O_DSYNC). */
async function writeZeros(fd: number, from: number, to: number): Promise<void> {
  for (let at = from; at < to; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, to - at);
    await writeDurably(fd, [ZEROS.subarray(0, n)], at);
  }
}

async function syncDir(dir: string): Promise<void> {
  const fd = await openAsync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncAsync(fd);
  } finally {
    await closeAsync(fd);
  }
}

/**
 * One `pwritev` at `position` on an O_DSYNC descriptor: settles once the frames are durable. A
 * short write fails (the rest of a record missing is a torn record, never answered 2xx).
 */
export function writeDurably(fd: number, frames: Buffer[], position: number): Promise<void> {
  const bytes = frames.reduce((n, f) => n + f.length, 0);
  return new Promise((resolve, reject) =>
    writev(fd, frames, position, (err, written) => {
      if (err) reject(err);
      else if (written !== bytes) reject(new Error(`short write: ${written} of ${bytes} bytes`));
      else resolve();
    }),
  );
}

function newBatch(segment: Segment, offset: number): Pending {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const durable = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Whoever holds `durable` sees a failure; one nobody awaits must not crash the process.
  durable.catch(() => {});
  return { segment, offset, frames: [], durable, resolve, reject };
}

/** Milliseconds since the epoch in base 36 (fixed width until 2059), then randomness. */
export function newRunId(now = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}${randomBytes(4).toString('hex')}`;
}

/**
 * Moves the directories of replicas whose lock went stale into ours: rename is atomic, so of two
 * replicas that find the same stale log only one takes it.
 */
function adoptStale(opts: WalOptions, ownDir: string): string[] {
  const staleAfterMs = opts.staleAfterMs ?? 120_000;
  const taken: string[] = [];
  for (const entry of readdirSync(opts.baseDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === opts.name || entry.name === 'lost+found') continue;
    const dir = join(opts.baseDir, entry.name);
    const touched = lastTouched(dir);
    if (touched === undefined || Date.now() - touched < staleAfterMs) continue;
    const target = join(ownDir, 'adopted', `${entry.name}-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(dir, target);
      taken.push(target);
      opts.logger.warn(
        { from: entry.name, idleSeconds: Math.round((Date.now() - touched) / 1000) },
        'taking over the write-ahead log of a replica gone for good',
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return taken;
}

/** When a replica last showed it was alive; undefined when the directory is gone (taken). */
function lastTouched(dir: string): number | undefined {
  for (const path of [join(dir, 'lock'), dir]) {
    try {
      return statSync(path).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

/** Reads a log directory and the logs it adopted; the first LogDir is `dir`'s own. */
function readLogTree(dir: string, adopted: boolean, log: Logger, out: RecoveredRecord[]): LogDir[] {
  const logDir: LogDir = { dir, segments: new Set(), adopted };
  const logs = [logDir];
  // Sorted by name: by run (oldest first), then by sequence.
  const files = readdirSync(dir)
    .filter((f) => SEGMENT_NAME.test(f))
    .sort();
  for (const file of files) {
    const run = SEGMENT_NAME.exec(file)![1]!;
    const path = join(dir, file);
    const buf = readFileSync(path);
    const decoded = decodeFrames(buf);
    if (decoded.torn) {
      log.warn(
        { segment: path, offset: decoded.torn.offset, reason: decoded.torn.reason, bytes: buf.length },
        'torn record in the write-ahead log skipped (a crash mid-append); the records before it are replayed',
      );
    }
    const segment: Segment = {
      path,
      log: logDir,
      // The records, and a torn tail; the zeros written ahead of the records are not counted
      // (as for the segment being written).
      bytes: decoded.torn ? buf.length : decoded.validBytes,
      outstanding: 0,
      unwritten: 0,
      sealed: true,
    };
    logDir.segments.add(segment);
    for (const payload of decoded.payloads) {
      let record: { seq?: unknown; body?: unknown };
      try {
        record = JSON.parse(payload.toString('utf8')) as typeof record;
      } catch {
        record = {};
      }
      if (typeof record.seq !== 'number' || record.body === undefined) {
        log.warn({ segment: path }, 'write-ahead log record with a valid checksum but no sequence skipped');
        continue;
      }
      segment.outstanding++;
      const token: Token = { log: run, seq: record.seq, segment };
      out.push({ token, body: record.body });
    }
  }
  const adoptedDir = join(dir, 'adopted');
  if (existsSync(adoptedDir)) {
    for (const entry of readdirSync(adoptedDir, { withFileTypes: true })) {
      if (entry.isDirectory()) logs.push(...readLogTree(join(adoptedDir, entry.name), true, log, out));
    }
  }
  return logs;
}
