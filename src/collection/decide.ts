import type { V1ContainerStatus, V1Job, V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import { artifactSegment } from '../collector/logs.js';
import type { CollectionTarget } from './job.js';

/** Something the case wanted and did not get, with why. */
export interface Gap {
  what: string;
  reason: string;
}

/**
 * The containers the collector reads: running ones with a container ID, limited to the case's
 * list when it has one. A container that is not running has nothing left in /proc; its logs
 * are still in the orchestrator's view, so it is a gap, not an error.
 */
export function collectionTargets(
  pod: V1Pod,
  wanted: string[],
): { targets: CollectionTarget[]; gaps: Gap[] } {
  const statuses: V1ContainerStatus[] = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
    ...(pod.status?.ephemeralContainerStatuses ?? []),
  ];
  // The image the spec names comes from the API server, not from the node: when it pins a
  // digest, the collector checks the node's word (the status imageID) against it.
  const specImages = new Map(
    [
      ...(pod.spec?.initContainers ?? []),
      ...(pod.spec?.containers ?? []),
      ...(pod.spec?.ephemeralContainers ?? []),
    ]
      .filter((c) => c.image)
      .map((c) => [c.name, c.image!]),
  );
  const targets: CollectionTarget[] = [];
  const gaps: Gap[] = [];
  for (const want of wanted) {
    if (!statuses.some((s) => s.name === want))
      gaps.push({ what: `container ${want}`, reason: 'the pod has no container of that name' });
  }
  for (const s of statuses) {
    if (wanted.length > 0 && !wanted.includes(s.name)) continue;
    if (!s.containerID) {
      gaps.push({ what: `container ${s.name}`, reason: 'no container ID: it never started' });
    } else if (!s.state?.running) {
      const state = s.state?.terminated
        ? `terminated (${s.state.terminated.reason ?? 'exit ' + s.state.terminated.exitCode})`
        : 'waiting';
      gaps.push({
        what: `container ${s.name}`,
        reason: `not running (${state}): nothing left to read from the node`,
      });
    } else {
      const [scheme, id] = s.containerID.split('://');
      const specImage = specImages.get(s.name);
      const image = {
        ...(s.image && { image: s.image }),
        ...(s.imageID && { imageID: s.imageID }),
        ...(specImage && { specImage }),
      };
      targets.push(
        id
          ? { name: s.name, id, runtime: scheme ?? 'unknown', ...image }
          : { name: s.name, id: s.containerID, runtime: 'unknown', ...image },
      );
    }
  }
  return { targets, gaps };
}

/** Where the collector files a container's artifacts in the case (see collectContainer). */
export function containerPrefix(containerId: string): string {
  return `containers/${artifactSegment(containerId.replace(/^[a-z-]+:\/\//, '').slice(0, 12))}`;
}

export type JobOutcome =
  { state: 'running' } | { state: 'succeeded' } | { state: 'failed'; reason: string; message: string };

/** A Job is over only once the Job controller says so (Complete or Failed). */
export function jobOutcome(job: V1Job): JobOutcome {
  const done = (type: string) => job.status?.conditions?.find((c) => c.type === type && c.status === 'True');
  if (done('Complete')) return { state: 'succeeded' };
  const failed = done('Failed');
  if (failed)
    return {
      state: 'failed',
      reason: failed.reason ?? 'Failed',
      message: failed.message ?? 'the collection Job failed',
    };
  return { state: 'running' };
}

/** The summary `amber collect` writes to its termination message (CollectionReport.summary). */
export const CollectorSummary = z.object({
  ok: z.boolean(),
  fatal: z.string().optional(),
  collected: z.number(),
  failed: z.number(),
  skipped: z.number(),
  report: z.object({ uri: z.string(), sha256: z.string() }).nullable(),
  firstFailures: z.array(z.string()).default([]),
});
export type CollectorSummary = z.infer<typeof CollectorSummary>;

export function parseSummary(message: string | undefined): CollectorSummary | undefined {
  if (!message?.trim()) return undefined;
  try {
    const r = CollectorSummary.safeParse(JSON.parse(message));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Where one container's collection stands. */
export type ContainerProgress =
  | { container: string; state: 'running' }
  /** The collector stored its report: what it got and missed is in there. */
  | { container: string; state: 'reported'; collected: number; failed: number }
  /** Over, and no report in the store: the reason says what is known. */
  | { container: string; state: 'missing'; reason: string };

export type CollectionDecision =
  | { state: 'running'; waitingFor: string[] }
  | { state: 'collected'; complete: boolean; message: string; missing: Gap[] };

/**
 * Running while any collector runs. Then collected: complete when every wanted container left
 * its report, at least one did, and nothing was out of reach; otherwise the message says
 * exactly what is missing.
 * Either way what was stored gets sealed: a partial record is evidence too.
 */
export function decideCollection(progress: ContainerProgress[], gaps: Gap[]): CollectionDecision {
  const running = progress.filter((p) => p.state === 'running').map((p) => p.container);
  if (running.length > 0) return { state: 'running', waitingFor: running };
  const missing: Gap[] = [
    ...gaps,
    ...progress.flatMap((p) =>
      p.state === 'missing' ? [{ what: `container ${p.container}`, reason: p.reason }] : [],
    ),
  ];
  const reported = progress.flatMap((p) => (p.state === 'reported' ? [p] : []));
  // A pod with nothing collected from its node is not "collected", even when nothing was asked.
  if (reported.length === 0 && missing.length === 0)
    missing.push({ what: 'containers', reason: 'the pod has no running container to collect' });
  const parts = [
    `${reported.length} of ${progress.length + gaps.length} containers collected`,
    ...reported
      .filter((r) => r.failed > 0)
      .map((r) => `${r.container}: ${r.failed} items unreadable (see its report.json)`),
    ...missing.map((m) => `missing ${m.what}: ${m.reason}`),
  ];
  return { state: 'collected', complete: missing.length === 0, message: parts.join('; '), missing };
}
