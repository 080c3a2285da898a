import { isDeepStrictEqual } from 'node:util';
import type { Condition } from '../api/common.js';
import {
  TIMELINE_LIMIT,
  type ConditionType,
  type ForensicCaseStatus,
  type TimelineEntry,
} from '../api/forensiccase.js';

/** A Kubernetes Event asked for by a timeline step (or on its own), sent once status is written. */
export interface CaseEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * Status is built on a copy and written only when it changed. A condition keeps its
 * lastTransitionTime while its status stays the same, as Kubernetes conventions ask.
 * Events go through here too: a step recorded in the timeline can ask for its Event, and the
 * Events are sent after the status that tells the same story was written.
 */
export class StatusBuilder {
  readonly status: ForensicCaseStatus;
  /** Events to send once the status is written. */
  readonly events: CaseEvent[] = [];

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

  /**
   * Appends to the bounded timeline: the oldest entries go first when it is full. With `event`,
   * the step is also reported as a Kubernetes Event (the reason defaults to the action).
   */
  record(
    action: string,
    outcome: TimelineEntry['outcome'],
    message?: string,
    event?: { type: CaseEvent['type']; reason?: string },
  ): void {
    if (event) this.event(event.type, event.reason ?? action, message ?? action);
    const timeline = (this.status.timeline ??= []);
    timeline.push({
      time: this.timestamp(),
      action,
      outcome,
      ...(message ? { message: message.slice(0, 1024) } : {}),
    });
    if (timeline.length > TIMELINE_LIMIT) timeline.splice(0, timeline.length - TIMELINE_LIMIT);
  }

  event(type: CaseEvent['type'], reason: string, message: string): void {
    this.events.push({ type, reason, message });
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
