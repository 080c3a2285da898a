import type { CoreV1Api } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { API_VERSION } from '../api/common.js';
import type { Logger } from '../observability/logger.js';
import { apiStatusCode } from '../runtime/errors.js';

/** Pauses before each retry of an Event the API server did not take; then it is given up. */
export const EVENT_RETRY_DELAYS_MS = [200, 1000, 5000] as const;

/**
 * Whether an Event create that failed is worth sending again: no answer at all (a connection
 * reset, a body cut short), the server overloaded (429) or failing (5xx). A 4xx is the same
 * answer next time.
 */
export function eventRetryable(err: unknown): boolean {
  const code = apiStatusCode(err);
  return code === undefined || code === 429 || code >= 500;
}

export interface CaseEventTarget {
  name: string;
  uid?: string;
}

/**
 * Kubernetes Events about cases. A ForensicCase is cluster-scoped, and the API server accepts
 * Events about cluster-scoped objects only in the `default` namespace (where `kubectl describe`
 * looks for them). A lost Event must never fail containment, but an Event is said once (the
 * status it goes with is already written): a transient failure is retried under the same name,
 * so a create whose answer was lost and is sent again lands once (the second gets 409).
 */
export class CaseEvents {
  private readonly namespace = 'default';

  constructor(
    private readonly core: CoreV1Api,
    private readonly logger: Logger,
    private readonly delays: readonly number[] = EVENT_RETRY_DELAYS_MS,
  ) {}

  async emit(
    kase: CaseEventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const now = new Date();
    // The random part must survive: a cut one would give every Event of a long-named case the
    // same name, and a retry would take another Event's 409 for its own.
    const name = `${kase.name.slice(0, 253 - 13)}.${randomBytes(6).toString('hex')}`;
    const body = {
      metadata: { name, namespace: this.namespace },
      involvedObject: { apiVersion: API_VERSION, kind: 'ForensicCase', name: kase.name, uid: kase.uid },
      type,
      reason,
      message: message.slice(0, 1024),
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      source: { component: 'amber-operator' },
      reportingComponent: 'amber-operator',
      reportingInstance: process.env.HOSTNAME ?? 'amber',
    };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.core.createNamespacedEvent({ namespace: this.namespace, body });
        return;
      } catch (err) {
        // An earlier attempt whose answer was lost did create it.
        if (attempt > 1 && apiStatusCode(err) === 409) return;
        const delay = this.delays[attempt - 1];
        if (delay === undefined || !eventRetryable(err)) {
          this.logger.warn({ err, case: kase.name, reason, attempts: attempt }, 'could not record Event');
          return;
        }
        this.logger.debug({ err, case: kase.name, reason, attempt }, 'Event not recorded yet; retrying');
        await sleep(delay);
      }
    }
  }
}
