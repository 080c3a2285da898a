import type { CoreV1Api } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { API_VERSION } from '../api/common.js';
import type { Logger } from '../observability/logger.js';

export interface CaseEventTarget {
  name: string;
  uid?: string;
}

/**
 * Kubernetes Events about cases. A ForensicCase is cluster-scoped, and the API server accepts
 * Events about cluster-scoped objects only in the `default` namespace (where `kubectl describe`
 * looks for them). Best effort: a lost Event must never fail containment.
 */
export class CaseEvents {
  private readonly namespace = 'default';

  constructor(
    private readonly core: CoreV1Api,
    private readonly logger: Logger,
  ) {}

  async emit(
    kase: CaseEventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace: this.namespace,
        body: {
          metadata: {
            name: `${kase.name}.${randomBytes(6).toString('hex')}`.slice(0, 253),
            namespace: this.namespace,
          },
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
        },
      });
    } catch (err) {
      this.logger.warn({ err, case: kase.name, reason }, 'could not record Event');
    }
  }
}
