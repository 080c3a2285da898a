import { Readable } from 'node:stream';
import type { ArtifactMetadata, EvidenceStore, StoredArtifact } from '../evidence/store.js';
import type { Logger } from '../observability/logger.js';
import type { CollectionReport } from './report.js';
import { errorMessage } from './report.js';
import { storeTar, type TarLimits, type TarStreamer } from './tar.js';

/**
 * How long a step may wait, once its deadline has passed, for the reads it started to notice
 * the abort and finish (a tar is finalized with what it has). A step still running after that
 * is stuck in a system call (a FUSE read, a page fault held by userfaultfd) and is abandoned.
 */
export const ABANDON_AFTER_MS = 2000;

export interface RunDeadlines {
  /** Epoch ms by which every step must be over, leaving the rest of the run's time to the report. */
  stepsUntil: number;
  /** The most any one step (an artifact, a tar, one process's memory) may take. */
  perStepMs: number;
}

/**
 * One collection in progress: where artifacts go, how gaps are recorded, and the clock. Every
 * group of the collector is written against this object, so a new group needs nothing threaded
 * through: `put`/`json`/`tar` store (and record) an artifact, `gap`/`skip` record what is
 * missing, and `step` runs a piece of work under its deadline.
 */
export class CollectionRun {
  constructor(
    private readonly store: EvidenceStore,
    readonly report: CollectionReport,
    readonly log: Logger,
    private readonly where: { caseId: string; prefix: string; node?: string },
    private readonly deadlines: RunDeadlines,
    /** The full container ID once the container is found, recorded with each artifact. */
    public containerId?: string,
  ) {}

  meta(group: string, contentType?: string): ArtifactMetadata {
    return {
      collectedBy: `collector/${group}`,
      collectedAt: new Date().toISOString(),
      ...(this.where.node && { node: this.where.node }),
      ...(this.containerId && { containerId: this.containerId }),
      ...(contentType && { contentType }),
    };
  }

  /** Stores `body` as `<prefix>/<name>`; a failure is a recorded gap, never an exception. */
  async put(
    name: string,
    body: Readable | Buffer | string | AsyncIterable<Buffer>,
    group: string,
    contentType = 'application/octet-stream',
  ): Promise<StoredArtifact | undefined> {
    const key = `${this.where.prefix}/${name}`;
    try {
      const a = await this.store.put(this.where.caseId, key, toBody(body), this.meta(group, contentType));
      this.report.stored(a);
      return a;
    } catch (err) {
      this.report.fail(key, err);
      this.log.warn({ artifact: name, err: errorMessage(err) }, 'artifact not stored');
      return undefined;
    }
  }

  json(name: string, value: unknown, group: string): Promise<StoredArtifact | undefined> {
    return this.put(name, toJson(value), group, 'application/json');
  }

  /** Streams a tar into the store while `fill` adds entries; every gap of the tar is recorded. */
  async tar(
    name: string,
    group: string,
    limits: TarLimits,
    signal: AbortSignal,
    fill: (t: TarStreamer) => Promise<void>,
  ): Promise<void> {
    const key = `${this.where.prefix}/${name}`;
    try {
      const r = await storeTar(this.store, this.where.caseId, key, limits, this.meta(group), fill, signal);
      this.report.stored(r.artifact);
      for (const g of r.gaps) {
        if (g.kind === 'skipped') this.report.skip(`${key}: ${g.path}`, g.reason);
        else this.report.fail(`${key}: ${g.path}`, g.reason);
      }
    } catch (err) {
      this.report.fail(key, err);
    }
  }

  gap(what: string, err: unknown): void {
    this.report.fail(what, err);
  }

  skip(what: string, reason: string): void {
    this.report.skip(what, reason);
  }

  /** The run's deadline has passed: no new step starts. */
  get expired(): boolean {
    return Date.now() >= this.deadlines.stepsUntil;
  }

  /**
   * Runs `work` under a deadline: its own (perStepMs) or what is left of the run's, whichever
   * comes first. At the deadline `signal` aborts; readers check it between chunks and entries
   * and finish with what they have (recorded as cut short). A step that does not settle
   * ABANDON_AFTER_MS later is abandoned (recorded) and the run goes on without it. An error is
   * a recorded gap. Returns undefined when the step did not complete.
   */
  async step<T>(what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> {
    const left = this.deadlines.stepsUntil - Date.now();
    if (left <= 0) {
      this.report.skip(what, "the run's deadline was reached before this started");
      return undefined;
    }
    const limitMs = Math.min(this.deadlines.perStepMs, left);
    const ac = new AbortController();
    const timers: NodeJS.Timeout[] = [];
    const abandoned = new Promise<{ abandoned: true }>((resolve) => {
      timers.push(setTimeout(() => ac.abort(), limitMs));
      timers.push(setTimeout(() => resolve({ abandoned: true }), limitMs + ABANDON_AFTER_MS));
    });
    const running = work(ac.signal).then(
      (value) => ({ value }),
      (err: unknown) => ({ err }),
    );
    try {
      const r = await Promise.race([running, abandoned]);
      if ('abandoned' in r) {
        this.report.deadline(what, limitMs, true);
        this.log.warn({ step: what, limitMs }, 'step abandoned at its deadline');
        return undefined;
      }
      if (ac.signal.aborted) this.report.deadline(what, limitMs, false);
      if ('err' in r) {
        this.report.fail(what, r.err);
        return undefined;
      }
      return r.value;
    } finally {
      for (const t of timers) clearTimeout(t);
    }
  }
}

function toBody(body: Readable | Buffer | string | AsyncIterable<Buffer>): Readable | Buffer | string {
  if (typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Readable) return body;
  // An async generator of chunks (a capped copy) becomes a stream the store can read.
  return Readable.from(body, { objectMode: false });
}

export function toJson(v: unknown): string {
  return `${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x), 2)}\n`;
}
