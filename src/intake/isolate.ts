import type { V1Pod } from '@kubernetes/client-node';
import pLimit from 'p-limit';
import { CASE_LABEL, NETWORK_QUARANTINE_LABEL } from '../containment/labels.js';
import { standingQuarantinePolicy } from '../containment/network-policy.js';
import { caseLabels, hasCaseLabels } from '../containment/pod.js';
import type { Logger } from '../observability/logger.js';
import { errorMessage, isConflict } from '../runtime/errors.js';
import type { AlertTarget } from './falco.js';

/**
 * Isolation first (ADR 0025). Once the alert that opens a case is in the write-ahead log, the
 * intake isolates the pod itself, before the case exists: it reads the pod from the API server
 * and puts the case's labels on that pod, which the namespace's standing deny-all NetworkPolicy
 * selects. One write per pod (plus one policy per namespace, once). Everything else — the pin in
 * the case status, detaching from the workload, the node — stays with the case reconciler,
 * which also checks and repairs this work.
 *
 * The alert names the pod; nothing else of it is used. The pod written to is the one the API
 * server has under that name, and the patch carries its UID and resourceVersion, so it lands on
 * the pod that was read or fails. The decision itself (isolateEarly) is pure and table-tested.
 */

/** The API server calls early isolation makes. */
export interface PodIsolationApi {
  /** The pod, or undefined when there is none of that name. */
  readPod(namespace: string, name: string): Promise<V1Pod | undefined>;
  /** JSON merge patch of the pod. */
  patchPod(namespace: string, name: string, patch: object): Promise<void>;
  createNetworkPolicy(namespace: string, body: object): Promise<void>;
}

export type EarlyIsolation =
  | { action: 'label'; patch: object }
  | {
      action: 'skip';
      reason: 'pod-not-found' | 'host-network' | 'labelled-for-another-case' | 'already-labelled';
    };

/**
 * What to write on the pod the API server has under the alert's name, for the case the alert
 * opens. Skipped where the case reconciler must decide with more than the pod: a pod another
 * case's label names (it checks that case's pin; the label may be an attacker's), a hostNetwork
 * pod (no NetworkPolicy applies; the reconciler says so on the case).
 */
export function isolateEarly(pod: V1Pod | undefined, caseName: string): EarlyIsolation {
  if (!pod?.metadata?.uid) return { action: 'skip', reason: 'pod-not-found' };
  if (pod.spec?.hostNetwork) return { action: 'skip', reason: 'host-network' };
  const labels = pod.metadata.labels ?? {};
  for (const key of [CASE_LABEL, NETWORK_QUARANTINE_LABEL])
    if (labels[key] !== undefined && labels[key] !== caseName)
      return { action: 'skip', reason: 'labelled-for-another-case' };
  if (hasCaseLabels(pod, caseName, true)) return { action: 'skip', reason: 'already-labelled' };
  return {
    action: 'label',
    patch: {
      metadata: {
        uid: pod.metadata.uid,
        resourceVersion: pod.metadata.resourceVersion,
        labels: caseLabels(caseName, true),
      },
    },
  };
}

export type EarlyOutcome = EarlyIsolation['action'] | 'failed';

export class EarlyIsolator {
  /**
   * Namespaces whose standing policy this process created or found (a 409), and has not seen
   * deleted since: forgetStandingPolicy() is called from a watch on the standing policies, so a
   * deleted policy is created again before the next label in its namespace (ADR 0027).
   */
  private readonly standing = new Map<string, Promise<void>>();
  private readonly limit = pLimit(32);

  constructor(
    private readonly api: PodIsolationApi,
    private readonly log: Logger,
    private readonly onOutcome: (outcome: string) => void = () => {},
  ) {}

  /**
   * Isolates the pod for the case, or leaves it to the reconciler. Never throws: a failure here
   * only means the reconciler's first pass isolates the pod, a few hundred ms later.
   */
  isolate(caseName: string, target: AlertTarget): Promise<EarlyOutcome> {
    return this.limit(async () => {
      try {
        const pod = await this.api.readPod(target.namespace, target.pod);
        const decision = isolateEarly(pod, caseName);
        if (decision.action === 'label') {
          // The policy first, so the label isolates the pod the moment it lands. Only for a pod
          // that exists: an alert naming a namespace makes no write there unless a pod is labelled.
          await this.standingPolicy(target.namespace);
          await this.api.patchPod(target.namespace, target.pod, decision.patch);
        }
        this.onOutcome(decision.action === 'label' ? 'labelled' : decision.reason);
        return decision.action;
      } catch (err) {
        // A 409 (the pod changed or was replaced since it was read) or an outage: the case
        // reconciler decides from a fresh read.
        this.onOutcome('failed');
        this.log.info(
          { err: errorMessage(err), case: caseName, pod: `${target.namespace}/${target.pod}` },
          'pod not isolated by the intake; the case reconciler will',
        );
        return 'failed';
      }
    });
  }

  /** The standing policy of the namespace was deleted (a watch event): create it before the next label. */
  forgetStandingPolicy(namespace: string): void {
    this.standing.delete(namespace);
  }

  /** Whether the next label in the namespace is written without creating the standing policy first. */
  knowsStandingPolicy(namespace: string): boolean {
    return this.standing.has(namespace);
  }

  /**
   * Created once per namespace and process, and again after a delete. A 409 means it is there; whether it is the wanted
   * one (not edited) is the reconciler's to check and repair, before it counts a pod isolated.
   */
  private standingPolicy(namespace: string): Promise<void> {
    let done = this.standing.get(namespace);
    if (!done) {
      done = this.api.createNetworkPolicy(namespace, standingQuarantinePolicy(namespace)).catch((err) => {
        if (isConflict(err)) return;
        if (this.standing.get(namespace) === done) this.standing.delete(namespace);
        throw err;
      });
      this.standing.set(namespace, done);
    }
    return done;
  }
}
