import { Counter, type Registry } from 'prom-client';
import type { StoredArtifact } from '../evidence/store.js';

/** One artifact that reached the store. */
export interface CollectedEntry {
  artifact: string;
  size: number;
  sha256: string;
  uri: string;
}

/** Something the collector tried and could not get; `what` names it (artifact or source path). */
export interface GapEntry {
  what: string;
  reason: string;
}

export interface CollectionReportJson {
  caseId: string;
  containerId: string;
  runtime: string;
  node?: string;
  startedAt: string;
  finishedAt: string;
  collected: CollectedEntry[];
  /** Errors: the source existed (or should have) and could not be read or stored. */
  failed: GapEntry[];
  /** Deliberate omissions: size caps, options turned off, nothing of that kind present. */
  skipped: GapEntry[];
  /** Artifacts cut short by their own deadline or the run's; `abandoned` when a system call never returned. */
  deadlines: DeadlineEntry[];
  /** Set when the run's deadline ended the collection: what was not even started is in `skipped`. */
  cutShort?: string;
  /** Nothing failed and nothing was cut short (deliberate skips, caps included, do not count). */
  complete: boolean;
}

export interface DeadlineEntry {
  what: string;
  limitMs: number;
  abandoned: boolean;
}

export interface CollectorMetrics {
  artifacts: Counter<'result'>;
  bytes: Counter;
}

export function collectorMetrics(registry: Registry): CollectorMetrics {
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
  return {
    artifacts:
      existing('amber_collector_items_total') ??
      new Counter({
        name: 'amber_collector_items_total',
        help: 'Items the node collector handled, by result (collected, failed, skipped)',
        labelNames: ['result'],
        registers: [registry],
      }),
    bytes:
      existing('amber_collector_bytes_total') ??
      new Counter({
        name: 'amber_collector_bytes_total',
        help: 'Bytes of evidence the node collector stored',
        registers: [registry],
      }),
  };
}

/**
 * The running account of a collection: every artifact stored, every gap with its reason. The
 * collector never stops at the first error; it records it here and goes on.
 */
export class CollectionReport {
  readonly collected: CollectedEntry[] = [];
  readonly failed: GapEntry[] = [];
  readonly skipped: GapEntry[] = [];
  readonly deadlines: DeadlineEntry[] = [];
  cutShort: string | undefined;
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly metrics: CollectorMetrics,
    readonly header: { caseId: string; containerId: string; runtime: string; node?: string },
  ) {}

  stored(a: StoredArtifact): void {
    this.collected.push({ artifact: a.name, size: a.size, sha256: a.sha256, uri: a.uri });
    this.metrics.artifacts.inc({ result: 'collected' });
    this.metrics.bytes.inc(a.size);
  }

  fail(what: string, err: unknown): void {
    this.failed.push({ what, reason: errorMessage(err) });
    this.metrics.artifacts.inc({ result: 'failed' });
  }

  skip(what: string, reason: string): void {
    this.skipped.push({ what, reason });
    this.metrics.artifacts.inc({ result: 'skipped' });
  }

  toJSON(): CollectionReportJson {
    return {
      ...this.header,
      startedAt: this.startedAt,
      finishedAt: new Date().toISOString(),
      collected: this.collected,
      failed: this.failed,
      skipped: this.skipped,
      deadlines: this.deadlines,
      ...(this.cutShort !== undefined && { cutShort: this.cutShort }),
      complete: this.failed.length === 0 && this.deadlines.length === 0 && this.cutShort === undefined,
    };
  }

  deadline(what: string, limitMs: number, abandoned: boolean): void {
    this.deadlines.push({ what, limitMs, abandoned });
    this.fail(
      what,
      abandoned
        ? `deadline of ${limitMs} ms passed inside a system call that never returned: abandoned`
        : `deadline of ${limitMs} ms reached: cut short, what was read before is kept`,
    );
  }

  /**
   * What the operator reads from the pod status (the kubelet keeps at most 4096 bytes of a
   * termination message): counts, the report's location and digest, and the first failures.
   */
  summary(reportArtifact?: StoredArtifact, fatal?: string): string {
    const base = {
      caseId: this.header.caseId,
      containerId: this.header.containerId,
      ok: fatal === undefined,
      ...(fatal !== undefined && { fatal: fatal.slice(0, 512) }),
      collected: this.collected.length,
      failed: this.failed.length,
      skipped: this.skipped.length,
      complete: this.failed.length === 0 && this.deadlines.length === 0 && this.cutShort === undefined,
      ...(this.cutShort !== undefined && { cutShort: this.cutShort.slice(0, 200) }),
      bytes: this.collected.reduce((n, c) => n + c.size, 0),
      report: reportArtifact ? { uri: reportArtifact.uri, sha256: reportArtifact.sha256 } : null,
      firstFailures: [] as string[],
    };
    for (const f of this.failed) {
      const next = {
        ...base,
        firstFailures: [...base.firstFailures, `${f.what}: ${f.reason}`.slice(0, 200)],
      };
      if (Buffer.byteLength(JSON.stringify(next)) > 4000) break;
      base.firstFailures = next.firstFailures;
    }
    return JSON.stringify(base);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
