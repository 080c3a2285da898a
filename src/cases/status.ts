import { isDeepStrictEqual } from 'node:util';
import type { Condition } from '../api/common.js';
import {
  TIMELINE_LIMIT,
  type ConditionType,
  type ForensicCaseStatus,
  type TimelineEntry,
} from '../api/forensiccase.js';

/**
 * Status is built on a copy and written only when it changed. A condition keeps its
 * lastTransitionTime while its status stays the same, as Kubernetes conventions ask.
 */
export class StatusBuilder {
  readonly status: ForensicCaseStatus;

  constructor(
    private readonly original: ForensicCaseStatus | undefined,
    private readonly generation: number,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.status = structuredClone(original ?? {});
  }

  condition(type: ConditionType): Condition | undefined {
    return this.status.conditions?.find((c) => c.type === type);
  }

  isTrue(type: ConditionType): boolean {
    return this.condition(type)?.status === 'True';
  }

  setCondition(type: ConditionType, status: Condition['status'], reason: string, message: string): void {
    const conditions = (this.status.conditions ??= []);
    const existing = conditions.find((c) => c.type === type);
    const next: Condition = {
      type,
      status,
      reason,
      message: message.slice(0, 32_768),
      lastTransitionTime:
        existing && existing.status === status ? existing.lastTransitionTime : this.timestamp(),
      observedGeneration: this.generation,
    };
    if (existing) Object.assign(existing, next);
    else conditions.push(next);
  }

  /** Appends to the bounded timeline: the oldest entries go first when it is full. */
  record(action: string, outcome: TimelineEntry['outcome'], message?: string): void {
    const timeline = (this.status.timeline ??= []);
    timeline.push({
      time: this.timestamp(),
      action,
      outcome,
      ...(message ? { message: message.slice(0, 1024) } : {}),
    });
    if (timeline.length > TIMELINE_LIMIT) timeline.splice(0, timeline.length - TIMELINE_LIMIT);
  }

  recorded(action: string): boolean {
    return this.status.timeline?.some((e) => e.action === action && e.outcome === 'Succeeded') ?? false;
  }

  timestamp(): string {
    // Kubernetes' metav1.Time has second precision; keep millis in the timeline for ordering.
    return this.now().toISOString();
  }

  get changed(): boolean {
    return !isDeepStrictEqual(this.original ?? {}, this.status);
  }

  finish(): ForensicCaseStatus {
    this.status.observedGeneration = this.generation;
    return this.status;
  }
}
